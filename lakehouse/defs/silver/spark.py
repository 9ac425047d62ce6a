"""Silver assets computed by Spark: daily partitions, a backfill is one Spark run.

Spark pays a JVM start (seconds) that the pyiceberg assets do not, so it takes the
transforms whose input is a range of days: sessionization. (A large CDC changelog is
not a separate asset: the CDC silver assets run on Spark when it is large,
``lakehouse.spark.cdc_build``.) It reads and writes the same Iceberg tables through the
same catalog as every other asset.
"""

import warnings
from datetime import datetime
from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.orchestration.partitions import DAILY
from lakehouse.settings import get_settings
from lakehouse.spark.stats import spark_work
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource

if TYPE_CHECKING:
    from pyiceberg.table import Table

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
    from lakehouse.tables.commits import PARTITION_KEY, RUN_ID_KEY

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

    from lakehouse.spark.sessions import SESSIONS_DDL, sessionize
    from lakehouse.tables.commits import ensure_table

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


def _summary_int(table: "Table", key: str) -> int:
    from lakehouse.tables.increments import summary_count

    return summary_count(table.current_snapshot(), key)
