"""silver.page_views -> silver.sessions: per-user sessions with a 30-minute inactivity gap.

The rules (the spec both implementations below follow):
- page views with a user, ordered per user by (event_ts, event_id);
- a session ends when the user is inactive for **more than 30 minutes**, and at
  midnight UTC (as Google Analytics does), so each day's sessions depend on that
  day's page views only: a daily partition is recomputed alone, idempotently;
- ``session_id`` is ``<user_id>:<start in epoch microseconds>`` (stable across reruns);
- metrics: start, end, duration, page views, distinct pages, product views, landing
  and exit page (first and last page by the same ordering).

Spark is the engine for large date ranges (``sessionize``); the pandas version
(``sessionize_pandas``) is the single-process path the benchmark compares it with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

GAP_SECONDS = 30 * 60

SESSIONS_COLUMNS = (
    "session_id",
    "user_id",
    "session_date",
    "session_start",
    "session_end",
    "duration_seconds",
    "page_views",
    "distinct_pages",
    "product_views",
    "landing_page",
    "exit_page",
)

SESSIONS_DDL = """
    session_id string,
    user_id string,
    session_date date,
    session_start timestamp,
    session_end timestamp,
    duration_seconds double,
    page_views bigint,
    distinct_pages bigint,
    product_views bigint,
    landing_page string,
    exit_page string
"""

SESSIONS_ARROW = pa.schema(
    [
        ("session_id", pa.string()),
        ("user_id", pa.string()),
        ("session_date", pa.date32()),
        ("session_start", pa.timestamp("us", tz="UTC")),
        ("session_end", pa.timestamp("us", tz="UTC")),
        ("duration_seconds", pa.float64()),
        ("page_views", pa.int64()),
        ("distinct_pages", pa.int64()),
        ("product_views", pa.int64()),
        ("landing_page", pa.string()),
        ("exit_page", pa.string()),
    ]
)


def sessionize(page_views: DataFrame) -> DataFrame:
    """Sessions of a Spark DataFrame of page views (columns of silver.page_views)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    views = page_views.where(F.col("user_id").isNotNull()).withColumn(
        "session_date", F.to_date("event_ts")
    )
    ordered = Window.partitionBy("user_id", "session_date").orderBy("event_ts", "event_id")
    gap = F.unix_micros("event_ts") - F.unix_micros(F.lag("event_ts").over(ordered))
    starts = F.when(gap.isNull() | (gap > GAP_SECONDS * 1_000_000), 1).otherwise(0)
    numbered = views.withColumn("_starts", starts).withColumn(
        "_session",
        F.sum("_starts").over(ordered.rowsBetween(Window.unboundedPreceding, Window.currentRow)),
    )
    position = F.struct("event_ts", "event_id")
    sessions = numbered.groupBy("user_id", "session_date", "_session").agg(
        F.min("event_ts").alias("session_start"),
        F.max("event_ts").alias("session_end"),
        F.count(F.lit(1)).alias("page_views"),
        F.countDistinct("page").alias("distinct_pages"),
        F.count("product_id").alias("product_views"),
        F.min_by("page", position).alias("landing_page"),
        F.max_by("page", position).alias("exit_page"),
    )
    return sessions.select(
        F.concat_ws(":", "user_id", F.unix_micros("session_start").cast("string")).alias(
            "session_id"
        ),
        "user_id",
        "session_date",
        "session_start",
        "session_end",
        ((F.unix_micros("session_end") - F.unix_micros("session_start")) / 1_000_000).alias(
            "duration_seconds"
        ),
        F.col("page_views").cast("long"),
        F.col("distinct_pages").cast("long"),
        F.col("product_views").cast("long"),
        "landing_page",
        "exit_page",
    )


def sessionize_pandas(page_views: pa.Table) -> pa.Table:
    """The same sessions computed in one process with pandas (the Arrow path)."""
    import pandas as pd  # here: the Spark asset that imports this module does not need it

    df = page_views.select(["event_id", "user_id", "page", "product_id", "event_ts"]).to_pandas()
    df = df[df["user_id"].notna()].copy()
    df["session_date"] = df["event_ts"].dt.tz_convert("UTC").dt.date
    df = df.sort_values(["user_id", "session_date", "event_ts", "event_id"], kind="stable")
    same_day = (df["user_id"] == df["user_id"].shift()) & (
        df["session_date"] == df["session_date"].shift()
    )
    gap = df["event_ts"] - df["event_ts"].shift()
    starts = ~same_day | (gap > pd.Timedelta(seconds=GAP_SECONDS))
    df["_session"] = starts.cumsum()
    grouped = df.groupby("_session", sort=False)
    out = grouped.agg(
        user_id=("user_id", "first"),
        session_date=("session_date", "first"),
        session_start=("event_ts", "first"),
        session_end=("event_ts", "last"),
        page_views=("event_id", "size"),
        distinct_pages=("page", "nunique"),
        product_views=("product_id", "count"),
        landing_page=("page", "first"),
        exit_page=("page", "last"),
    )
    # groupby first/last skip nulls; landing and exit pages are the first and last rows'
    out["landing_page"] = grouped["page"].nth(0).to_numpy()
    out["exit_page"] = grouped["page"].nth(-1).to_numpy()
    start_us = out["session_start"].dt.as_unit("us").astype("int64")
    end_us = out["session_end"].dt.as_unit("us").astype("int64")
    out["session_id"] = out["user_id"] + ":" + start_us.astype(str)
    out["duration_seconds"] = (end_us - start_us) / 1_000_000
    out = out.reset_index(drop=True)[list(SESSIONS_COLUMNS)]
    return pa.Table.from_pandas(out, schema=SESSIONS_ARROW, preserve_index=False)
