"""Bronze: ingestion assets per declared source, their sensors and jobs, their checks."""
