"""Sessionization: Spark (local[*]) against the pyiceberg/Arrow path, at several sizes.

Fills silver.page_views of a temporary catalog with N synthetic page views over
three days, then measures, per size (median of --repeat runs):
  arrow   pyiceberg scan -> pandas sessionize (lakehouse.spark.sessions) ->
          pyiceberg overwrite of the sessions table
  spark   Spark reads the same Iceberg table, sessionizes, overwrites its days
          (warm session: the JVM start is measured separately, once, cold and warm)
Usage: python -m bench.spark_sessions [--sizes 200000,2000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

START = datetime(2026, 11, 1, tzinfo=UTC)


def page_views(n: int, seed: int = 1) -> pa.Table:
    """Three days of page views by n/40 users (sessions of a few views, as in the demo)."""
    from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS

    rng = np.random.default_rng(seed)
    users = max(100, n // 40)
    micros = np.sort(rng.integers(0, 3 * 86_400 * 1_000_000, n))
    ts = pa.array(micros + int(START.timestamp() * 1_000_000), pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    user = rng.integers(0, users, n)
    product = rng.integers(0, 500, n)
    has_product = rng.random(n) < 0.6
    columns = {
        "event_id": pa.array([f"e-{i:09d}" for i in range(n)]),
        "user_id": pa.array([f"u-{u:06d}" for u in user]),
        "session_id": pa.nulls(n, pa.string()),
        "page": pa.array(
            [f"/product/p-{p:04d}" if h else "/" for p, h in zip(product, has_product, strict=True)]
        ),
        "product_id": pa.array(
            [f"p-{p:04d}" if h else None for p, h in zip(product, has_product, strict=True)]
        ),
        "event_ts": ts,
        "event_date": ts.cast(pa.date32()),
        "_kafka_partition": pa.array(np.zeros(n, dtype=np.int32)),
        "_kafka_offset": pa.array(np.arange(n, dtype=np.int64)),
    }
    return pa.Table.from_pydict(columns, schema=SILVER_PAGE_VIEWS.arrow_schema())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,2000000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    state = tempfile.mkdtemp(prefix="lakehouse-bench-spark-")
    os.environ["LAKEHOUSE_STATE_DIR"] = state
    os.environ.setdefault(
        "LAKEHOUSE_SPARK_JARS_DIR",
        str(__import__("lakehouse.settings").settings.PROJECT_ROOT / ".lakehouse" / "spark-jars"),
    )
    from pyspark.sql import functions as F

    from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
    from lakehouse.settings import get_settings
    from lakehouse.spark.jars import build_spark_jars
    from lakehouse.spark.sessions import (
        SESSIONS_ARROW,
        SESSIONS_DDL,
        sessionize,
        sessionize_pandas,
    )
    from lakehouse.tables.commits import ensure_table
    from resources.iceberg import IcebergCatalogResource
    from resources.spark import SparkResource

    settings = get_settings()
    build_spark_jars(settings)
    catalog = IcebergCatalogResource().load()
    catalog.create_namespace_if_not_exists("silver")

    spark = SparkResource()
    began = time.monotonic()
    session = spark.session()
    cold = time.monotonic() - began
    session.sql("select 1").collect()
    spark.teardown_after_execution(None)
    warm_starts = []
    for _ in range(2):
        began = time.monotonic()
        session = spark.session()
        session.sql("select 1").collect()
        warm_starts.append(time.monotonic() - began)
        if _ == 0:
            spark.teardown_after_execution(None)
    warm = statistics.median(warm_starts)
    session.sql(
        f"CREATE TABLE IF NOT EXISTS silver.sessions_spark ({SESSIONS_DDL}) USING iceberg "
        "PARTITIONED BY (session_date)"
    )
    arrow_sessions = catalog.create_table_if_not_exists("silver.sessions_arrow", SESSIONS_ARROW)

    rows = []
    for n in sizes:
        views = page_views(n)
        for name in ("silver.page_views",):
            if catalog.table_exists(name):
                catalog.drop_table(name)
        ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS).append(views)

        def arrow_path() -> int:
            table = catalog.load_table("silver.page_views").scan().to_arrow()
            out = sessionize_pandas(table)
            arrow_sessions.overwrite(out)
            return out.num_rows

        def spark_path() -> int:
            window = (F.col("event_ts") >= F.lit(START)) & (
                F.col("event_ts") < F.lit(START + timedelta(days=3))
            )
            out = sessionize(session.table("silver.page_views").where(window))
            out.writeTo("silver.sessions_spark").overwritePartitions()
            return session.table("silver.sessions_spark").count()

        timings = {}
        counts = {}
        for label, fn in (("arrow", arrow_path), ("spark", spark_path)):
            runs = []
            for _ in range(args.repeat):
                began = time.monotonic()
                counts[label] = fn()
                runs.append(time.monotonic() - began)
            timings[label] = statistics.median(runs)
        assert counts["arrow"] == counts["spark"], counts
        rows.append((n, counts["arrow"], timings["arrow"], timings["spark"]))
    spark.teardown_after_execution(None)

    print(
        f"\nmachine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Spark master {settings.spark_master}, {datetime.now(UTC):%Y-%m-%d}"
    )
    print(f"Spark session start: cold {cold:.1f} s, warm {warm:.1f} s")
    print("| page views | sessions | arrow (pandas) | spark (warm) | spark incl. start | ratio |")
    print("|---|---|---|---|---|---|")
    for n, sessions, arrow, sparkt in rows:
        print(
            f"| {n:,} | {sessions:,} | {arrow:.2f} s | {sparkt:.2f} s | {sparkt + warm:.2f} s "
            f"| {arrow / sparkt:.2f} |"
        )


if __name__ == "__main__":
    main()
