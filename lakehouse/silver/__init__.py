"""Silver builds without Dagster: what each silver table is computed from, incrementally
or in full, and how it is written. The assets in ``lakehouse.defs.silver`` run them."""
