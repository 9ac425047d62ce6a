"""Daily Iceberg maintenance: expire old snapshots of every lakehouse table, keeping
the committed source positions (see ``lakehouse/tables/maintenance.py``)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.k8s import k8s_tags
from lakehouse.settings import get_settings
from lakehouse.tables.maintenance import expire_snapshots
from resources.iceberg import IcebergCatalogResource

NAMESPACES = ("bronze", "quarantine", "silver", "gold")


@dg.op(
    tags=k8s_tags("light"),
    description="Checkpoint each table's source positions, then expire snapshots older than "
    "LAKEHOUSE_SNAPSHOT_RETENTION_HOURS except the newest LAKEHOUSE_SNAPSHOTS_KEEP_LAST. "
    "Orphan files are not removed (pyiceberg 0.12 cannot); use Spark's remove_orphan_files.",
)
def expire_table_snapshots(
    context: dg.OpExecutionContext, iceberg: IcebergCatalogResource
) -> dg.Output[int]:
    settings = get_settings()
    cutoff = datetime.now(UTC) - timedelta(hours=settings.snapshot_retention_hours)
    catalog = iceberg.load()
    expired = 0
    report = {}
    for namespace in NAMESPACES:
        if (namespace,) not in catalog.list_namespaces():
            continue
        for identifier in catalog.list_tables(namespace):
            result = expire_snapshots(
                catalog.load_table(identifier), cutoff, settings.snapshots_keep_last
            )
            expired += result.expired
            report[result.table] = f"expired {result.expired}, kept {result.kept}"
            context.log.info(f"{result.table}: {report[result.table]}")
    return dg.Output(
        expired,
        metadata={
            "snapshots expired": expired,
            "tables": dg.MetadataValue.json(report),
            "cutoff": cutoff.isoformat(),
        },
    )


@dg.job(
    name="iceberg_maintenance",
    description="Expire old Iceberg snapshots, never the committed source positions.",
    tags={"dagster/max_retries": "1"},
)
def iceberg_maintenance_job() -> None:
    expire_table_snapshots()


iceberg_maintenance_schedule = dg.ScheduleDefinition(
    name="iceberg_maintenance_daily",
    job=iceberg_maintenance_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily snapshot expiry (retention from LAKEHOUSE_SNAPSHOT_RETENTION_HOURS).",
)
