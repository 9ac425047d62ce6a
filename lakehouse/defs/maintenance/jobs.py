"""Daily Iceberg maintenance: compact small files (``lakehouse/tables/compaction.py``),
expire old snapshots of every lakehouse table, keeping the committed source positions,
then remove the files no snapshot references any more (``lakehouse/tables/maintenance.py``).

Compaction runs first so that the same run's expiry and orphan removal reclaim the small
files it replaced, once no kept snapshot references them."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource

# ops: the run history gets a commit per finished run, as bronze gets one per batch
NAMESPACES = ("bronze", "quarantine", "silver", "gold", "ops")


@dg.op(
    tags=k8s_tags("light"),
    ins={"after_compaction": dg.In(dg.Nothing)},
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


class CompactionConfig(dg.Config):
    """Thresholds of ``lakehouse.tables.compaction.CompactionPolicy`` (Spark's option names).

    A table's ``write.target-file-size-bytes`` sets its target, and its
    ``lakehouse.compaction.min-input-files`` overrides ``min_input_files``.
    """

    min_input_files: int = 5
    min_manifests: int = 16
    arrow_max_bytes: int = 1024**3
    dry_run: bool = False


@dg.op(
    tags=k8s_tags("light"),
    description="Bin-pack each partition's small data files toward the table's "
    "write.target-file-size-bytes where it holds at least min_input_files of them, and pack "
    "many small manifests; one replace snapshot per table, which adds no row, moves no "
    "source position and is skipped by incremental readers. Arrow (pyiceberg) up to "
    "arrow_max_bytes of input, Spark's rewrite_data_files beyond or with delete files.",
)
def compact_tables(
    context: dg.OpExecutionContext,
    config: CompactionConfig,
    iceberg: IcebergCatalogResource,
    spark: SparkResource,
) -> dg.Output[int]:
    from lakehouse.tables.compaction import (
        ARROW,
        NONE,
        SPARK,
        CompactionPolicy,
        choose_engine,
        compact_table,
        compact_with_spark,
        plan_compaction,
    )

    policy = CompactionPolicy(
        min_input_files=config.min_input_files,
        min_manifests=config.min_manifests,
        arrow_max_bytes=config.arrow_max_bytes,
    )
    catalog = iceberg.load()
    report: dict[str, dict] = {}
    rewritten = before_files = after_files = 0
    for identifier in _tables(catalog):
        table = catalog.load_table(identifier)
        plan = plan_compaction(table, policy)
        engine = choose_engine(plan, policy)
        name = ".".join(identifier)
        if config.dry_run or engine == NONE:
            planned = {
                "engine": engine,
                "groups": len(plan.groups),
                "files_to_rewrite": sum(len(g.files) for g in plan.groups),
                "bytes_to_rewrite": plan.input_bytes,
                "manifests": plan.manifests,
                "pack_manifests": plan.pack_manifests,
            }
            if engine != NONE:
                report[name] = {"dry run": True, **planned}
            continue
        if engine == ARROW:
            result = compact_table(table, policy, context.run_id, plan)
        else:
            assert engine == SPARK
            result = compact_with_spark(
                spark.session(), get_settings().catalog_name, table, policy, plan
            )
        report[name] = result.metadata()
        rewritten += result.files_rewritten
        before_files += result.before.files
        after_files += result.after.files
        context.log.info(f"{name}: {report[name]}")
    return dg.Output(
        rewritten,
        metadata={
            "files rewritten": rewritten,
            "data files before (compacted tables)": before_files,
            "data files after (compacted tables)": after_files,
            "tables compacted": len(report),
            "dry run": config.dry_run,
            "tables": dg.MetadataValue.json(report),
        },
    )


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
    description="Compact small data files and manifests; expire old Iceberg snapshots, never "
    "the committed source positions; then delete the files no snapshot references any more.",
    tags={"dagster/max_retries": "1"},
)
def iceberg_maintenance_job() -> None:
    remove_table_orphan_files(expire_table_snapshots(compact_tables()))


@dg.job(
    name="iceberg_snapshot_expiry",
    description="Expire old Iceberg snapshots, never the committed source positions, every "
    "hour: a table with a short retention (a busy source's bronze) keeps about that much "
    "history, not a day more. Orphan files are removed by the daily iceberg_maintenance.",
    tags={"dagster/max_retries": "1"},
)
def iceberg_snapshot_expiry_job() -> None:
    expire_table_snapshots()
