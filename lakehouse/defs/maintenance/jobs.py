"""Daily Iceberg maintenance: expire old snapshots of every lakehouse table, keeping
the committed source positions, then remove the files no snapshot references any
more (see ``lakehouse/tables/maintenance.py``)."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource

NAMESPACES = ("bronze", "quarantine", "silver", "gold")


@dg.op(
    tags=k8s_tags("light"),
    description="Checkpoint each table's source positions, then expire snapshots older than "
    "the table's history.expire.max-snapshot-age-ms (default "
    "LAKEHOUSE_SNAPSHOT_RETENTION_HOURS) except the newest history.expire.min-snapshots-to-keep "
    "(default LAKEHOUSE_SNAPSHOTS_KEEP_LAST).",
)
def expire_table_snapshots(
    context: dg.OpExecutionContext, iceberg: IcebergCatalogResource
) -> dg.Output[int]:
    from lakehouse.tables.maintenance import Retention, expire_snapshots

    settings = get_settings()
    now = datetime.now(UTC)
    default = Retention(
        timedelta(hours=settings.snapshot_retention_hours), settings.snapshots_keep_last
    )
    catalog = iceberg.load()
    expired = 0
    report = {}
    for identifier in _tables(catalog):
        table = catalog.load_table(identifier)
        note = ""
        try:
            retention = Retention.of(table, default)
        except (ValueError, OverflowError) as exc:  # one table's typo must not stop the rest
            retention, note = default, f"; default used: {exc}"
            context.log.warning(f"{'.'.join(identifier)}: {exc}; default retention used")
        result = expire_snapshots(table, now - retention.max_age, retention.keep_last)
        expired += result.expired
        report[result.table] = (
            f"expired {result.expired}, kept {result.kept} (retention {retention}{note})"
        )
        context.log.info(f"{result.table}: {report[result.table]}")
    return dg.Output(
        expired,
        metadata={
            "snapshots expired": expired,
            "tables": dg.MetadataValue.json(report),
            "default retention": str(default),
            "run at": now.isoformat(),
        },
    )


def _tables(catalog) -> list[tuple[str, ...]]:
    return [
        identifier
        for namespace in NAMESPACES
        if (namespace,) in catalog.list_namespaces()
        for identifier in catalog.list_tables(namespace)
    ]


class OrphanFilesConfig(dg.Config):
    """A dry run lists what would be deleted (in the run's metadata) and deletes nothing."""

    dry_run: bool = False


@dg.op(
    tags=k8s_tags("light"),
    ins={"after_expiry": dg.In(dg.Nothing)},
    description="Delete files under each table's location that no snapshot references "
    "(left by killed runs, or by snapshots just expired) and older than "
    "LAKEHOUSE_ORPHAN_FILE_MIN_AGE_HOURS, so that a write in flight is never touched.",
)
def remove_table_orphan_files(
    context: dg.OpExecutionContext, config: OrphanFilesConfig, iceberg: IcebergCatalogResource
) -> dg.Output[int]:
    from lakehouse.tables.maintenance import remove_orphan_files

    settings = get_settings()
    cutoff = datetime.now(UTC) - timedelta(hours=settings.orphan_file_min_age_hours)
    catalog = iceberg.load()
    report = {}
    orphans = orphan_bytes = deleted = too_young = 0
    for identifier in _tables(catalog):
        result = remove_orphan_files(catalog.load_table(identifier), cutoff, config.dry_run)
        orphans += result.orphans
        orphan_bytes += result.orphan_bytes
        deleted += result.deleted
        too_young += result.too_young
        if result.orphans or result.too_young:
            report[result.table] = {
                "orphans": result.orphans,
                "bytes": result.orphan_bytes,
                "deleted": result.deleted,
                "kept, younger than the cutoff": result.too_young,
                "paths": result.paths[:50],
            }
            context.log.info(f"{result.table}: {report[result.table]}")
    return dg.Output(
        deleted,
        metadata={
            "orphan files": orphans,
            "orphan bytes": orphan_bytes,
            "files deleted": deleted,
            "unreferenced files kept (younger than the cutoff)": too_young,
            "dry run": config.dry_run,
            "cutoff": cutoff.isoformat(),
            "tables": dg.MetadataValue.json(report),
        },
    )


@dg.job(
    name="iceberg_maintenance",
    description="Expire old Iceberg snapshots, never the committed source positions; then "
    "delete the files no snapshot references any more.",
    tags={"dagster/max_retries": "1"},
)
def iceberg_maintenance_job() -> None:
    remove_table_orphan_files(expire_table_snapshots())


@dg.job(
    name="iceberg_snapshot_expiry",
    description="Expire old Iceberg snapshots, never the committed source positions, every "
    "hour: a table with a short retention (a busy source's bronze) keeps about that much "
    "history, not a day more. Orphan files are removed by the daily iceberg_maintenance.",
    tags={"dagster/max_retries": "1"},
)
def iceberg_snapshot_expiry_job() -> None:
    expire_table_snapshots()
