"""When table maintenance runs: expiry hourly, expiry and orphan removal daily."""

import dagster as dg

from lakehouse.defs.maintenance.jobs import iceberg_maintenance_job, iceberg_snapshot_expiry_job

iceberg_snapshot_expiry_schedule = dg.ScheduleDefinition(
    name="iceberg_snapshot_expiry_hourly",
    job=iceberg_snapshot_expiry_job,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly snapshot expiry (each table's history.expire.max-snapshot-age-ms, "
    "default LAKEHOUSE_SNAPSHOT_RETENTION_HOURS).",
)

iceberg_maintenance_schedule = dg.ScheduleDefinition(
    name="iceberg_maintenance_daily",
    job=iceberg_maintenance_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily snapshot expiry (each table's history.expire.max-snapshot-age-ms, default "
    "LAKEHOUSE_SNAPSHOT_RETENTION_HOURS) and "
    "orphan-file removal (files older than LAKEHOUSE_ORPHAN_FILE_MIN_AGE_HOURS).",
)
