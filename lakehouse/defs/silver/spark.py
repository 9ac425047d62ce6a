"""Silver assets computed by Spark: daily partitions, a backfill is one Spark run.

Spark pays a JVM start (seconds) that the pyiceberg assets do not, so it takes the
transforms whose input grows with history: sessionization over a date range, and a
large CDC backlog merged into current state. Both read and write the same Iceberg
tables through the same catalog as every other asset.
"""

import warnings
from datetime import datetime

import dagster as dg
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS, cdc_silver_layouts
from lakehouse.declarations.sources import CdcSource, sources
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.orchestration.partitions import DAILY
from lakehouse.settings import get_settings
from lakehouse.spark.cdc_merge import decode_changes, fold_changes, merge_into
from lakehouse.spark.sessions import SESSIONS_DDL, sessionize
from lakehouse.spark.stats import spark_work
from lakehouse.tables.commits import PARTITION_KEY, RUN_ID_KEY, ensure_table
from lakehouse.transforms.masking import pii_key
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource

# single-run backfills are what these assets are for; Dagster marks the parameter beta
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)

ENGINE_TAG = "lakehouse/engine"
SPARK_TAGS = {ENGINE_TAG: "spark"}
SPARK_TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Spark-written tables keep Iceberg's commit retries (no positions to protect):
    # a concurrent pyiceberg commit makes Spark re-validate and retry, not fail.
    "commit.retry.num-retries": "10",
}


def _window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start, window.end


def _snapshot_options(context: dg.AssetExecutionContext) -> dict[str, str]:
    keys = context.partition_keys
    partition = keys[0] if len(keys) == 1 else f"{keys[0]}...{keys[-1]}"
    return {
        f"snapshot-property.{RUN_ID_KEY}": context.run.run_id,
        f"snapshot-property.{PARTITION_KEY}": partition,
    }


def _qualified(identifier: str) -> str:
    return f"{get_settings().catalog_name}.{identifier}"


def _report(context: dg.AssetExecutionContext, spark: SparkResource, work) -> dict:
    started = spark.start_seconds
    context.log.info(work.summary())
    meta = work.metadata()
    if started is not None:
        meta["spark_session_seconds"] = round(started, 3)
    return meta


@dg.asset(
    key=["silver", "sessions"],
    group_name="silver",
    kinds={"iceberg", "spark"},
    tags=SPARK_TAGS,
    op_tags=k8s_tags("spark"),
    deps=[["silver", "page_views"]],
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    description="Per-user sessions (more than 30 minutes of inactivity, or midnight UTC, "
    "ends one) with start, end, duration, page views, distinct pages, product views, landing "
    "and exit page. Spark; each run replaces exactly its days.",
)
def silver_sessions(
    context: dg.AssetExecutionContext, spark: SparkResource, iceberg: IcebergCatalogResource
) -> dg.MaterializeResult:
    from pyspark.sql import functions as F

    catalog = iceberg.load()
    ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    start, end = _window(context)
    session = spark.session()
    target = _qualified("silver.sessions")
    properties = ", ".join(f"'{k}'='{v}'" for k, v in SPARK_TABLE_PROPERTIES.items())
    session.sql(
        f"CREATE TABLE IF NOT EXISTS {target} ({SESSIONS_DDL}) USING iceberg "
        f"PARTITIONED BY (session_date) TBLPROPERTIES ({properties})"
    )
    with spark_work(session, f"silver.sessions {start.date()}..{end.date()}") as work:
        views = session.table(_qualified("silver.page_views")).where(
            (F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end))
        )
        rows_in = views.count()
        writer = sessionize(views).writeTo(target)
        for key, value in _snapshot_options(context).items():
            writer = writer.option(key, value)
        # Replaces exactly the run's days, also those that now have no sessions.
        days = (F.col("session_date") >= F.lit(start.date())) & (
            F.col("session_date") < F.lit(end.date())
        )
        writer.overwrite(days)
    table = catalog.load_table("silver.sessions")
    return dg.MaterializeResult(
        metadata={
            **table_metadata(table),
            **_report(context, spark, work),
            "rows_in": rows_in,
            "rows_out": _summary_int(table, "added-records"),
            "rows_replaced": _summary_int(table, "deleted-records"),
            "partitions": len(context.partition_keys),
        }
    )


def cdc_merge_asset(source: CdcSource) -> dg.AssetsDefinition:
    """silver.<name>_merged: the changelog's days merged into current state by Spark."""
    current_layout, _ = cdc_silver_layouts(source.columns)
    identifier = f"silver.{source.name}_merged"

    @dg.asset(
        name=f"{source.name}_merged",
        key_prefix=["silver"],
        group_name="silver",
        kinds={"iceberg", "spark"},
        tags=SPARK_TAGS,
        op_tags=k8s_tags("spark"),
        deps=[["bronze", source.bronze_name]],
        partitions_def=DAILY,
        backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"lakehouse/keys": list(source.keys)},
        description=f"Current state of {source.topic}, like silver.{source.name}, kept by "
        "Spark MERGE INTO from the changes ingested on the run's days (for large backlogs): "
        "LSN order, deletes, truncates and unchanged TOAST values as in the pyiceberg path.",
    )
    def _asset(
        context: dg.AssetExecutionContext, spark: SparkResource, iceberg: IcebergCatalogResource
    ) -> dg.MaterializeResult:
        from pyspark.sql import functions as F

        catalog = iceberg.load()
        ensure_table(catalog, source.bronze_table, source.layout)
        _ensure_spark_table(catalog, identifier, current_layout)
        start, end = _window(context)
        session = spark.session()
        bronze = session.table(_qualified(source.bronze_table))
        with spark_work(session, f"{identifier} {start.date()}..{end.date()}") as work:
            in_range = bronze.where(
                (F.col("_ingested_at") >= F.lit(start)) & (F.col("_ingested_at") < F.lit(end))
            )
            key = pii_key() if source.pii else None
            batch = decode_changes(in_range, source.columns, source.pii, key).cache()
            resets = decode_changes(
                bronze.where("op IN ('d', 't')"), source.columns, source.pii, key
            )
            changes_in = batch.count()
            merge = fold_changes(batch, resets, source.columns, source.keys)
            folded = merge.changes.cache()
            keys_changed = folded.count()
            merge_into(session, _qualified(identifier), merge, source.columns, source.keys)
            folded.unpersist()
            batch.unpersist()
        table = catalog.load_table(identifier)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table),
                **_report(context, spark, work),
                "rows_in": changes_in,
                "keys_changed": keys_changed,
                # copy-on-write: a merge rewrites the files it touches
                "commit_added_records": _summary_int(table, "added-records"),
                "commit_deleted_records": _summary_int(table, "deleted-records"),
                "truncated": merge.truncate_lsn is not None,
                "partitions": len(context.partition_keys),
            }
        )

    return _asset


cdc_merge_assets = [cdc_merge_asset(s) for s in sources().cdc]


def _ensure_spark_table(catalog: Catalog, identifier: str, layout) -> Table:
    catalog.create_namespace_if_not_exists(identifier.split(".")[0])
    return catalog.create_table_if_not_exists(
        identifier,
        schema=layout.schema,
        partition_spec=layout.partition_spec,
        properties=SPARK_TABLE_PROPERTIES,
    )


def _summary_int(table: Table, key: str) -> int:
    snapshot = table.current_snapshot()
    value = snapshot.summary[key] if snapshot and snapshot.summary else None
    return int(value) if value is not None else 0
