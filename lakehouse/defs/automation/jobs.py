"""The whole graph once: what `make demo` and `lakehouse demo` run."""

from __future__ import annotations

import dagster as dg

from lakehouse.defs.gold.jobs import DAILY_GOLD
from lakehouse.defs.silver.jobs import SPARK_ASSETS

lakehouse_job = dg.define_asset_job(
    "lakehouse",
    # the ops group (run history and its health model) is written by sensors and an
    # hourly automation, not by the pipeline it describes
    selection=dg.AssetSelection.all() - DAILY_GOLD - SPARK_ASSETS - dg.AssetSelection.groups("ops"),
    description="The whole graph once: ingest what is new, rebuild silver and the "
    "unpartitioned gold models (daily partitions run in build_gold_daily, Spark in spark).",
)
