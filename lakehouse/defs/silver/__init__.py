"""Silver: typed, validated, deduplicated tables (Arrow and Spark engines) and their checks."""
