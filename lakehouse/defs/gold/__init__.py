"""Gold: the dbt models as assets (dbt tests as checks), their jobs and schedules."""
