"""The Spark job: daily-partitioned silver assets, one Spark run per backfill."""

from __future__ import annotations

import dagster as dg

from lakehouse.defs.silver.spark import SPARK_TAGS
from lakehouse.orchestration.retries import RETRY_TAGS

# Spark assets are daily-partitioned (a job holds one partitioning) and start a JVM:
# they run in spark_job, by partition or as single-run backfills, not in the demo graph.
SPARK_ASSETS = dg.AssetSelection.tag("lakehouse/engine", "spark")

spark_job = dg.define_asset_job(
    "spark",
    selection=SPARK_ASSETS,
    # the deploy's run queue limits concurrent Spark runs by this tag
    tags={**RETRY_TAGS, **SPARK_TAGS},
    description="Spark silver assets for a day or a range of days (one Spark run per backfill).",
)
