"""The Spark jobs: daily-partitioned Spark assets, and the CDC silver builds on Spark."""

from __future__ import annotations

import dagster as dg

from lakehouse.declarations.sources import sources
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

# The CDC silver assets choose Spark by themselves past a size (config engine: auto);
# this job asks for it, e.g. to catch up on a large backlog (add full: true to rebuild).
cdc_spark_job = dg.define_asset_job(
    "cdc_on_spark",
    selection=dg.AssetSelection.assets(
        *(
            key
            for s in sources().cdc
            for key in (["silver", s.name], ["silver", f"{s.name}_history"], ["quarantine", s.name])
        )
    ),
    config={"ops": {f"silver_{s.name}": {"config": {"engine": "spark"}} for s in sources().cdc}},
    tags={**RETRY_TAGS, **SPARK_TAGS},
    description="Every CDC source's current state, history and quarantine, built on Spark "
    "(the same tables the default runs build).",
)
