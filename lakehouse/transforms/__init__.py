"""Pure transforms (Arrow/pandas in, Arrow/pandas out), unit-testable without Dagster."""
