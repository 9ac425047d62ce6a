"""Gold jobs: the unpartitioned dbt models, and windows of days of the daily ones."""

from __future__ import annotations

import dagster as dg

from lakehouse.defs.gold.assets import gold_daily_dbt_models
from lakehouse.orchestration.retries import RETRY_TAGS

DAILY_GOLD = dg.AssetSelection.assets(gold_daily_dbt_models)

gold_job = dg.define_asset_job(
    "build_gold",
    selection=dg.AssetSelection.groups("gold") - DAILY_GOLD,
    tags=RETRY_TAGS,
    description="Rebuild the unpartitioned gold dbt models and run their tests.",
)

gold_daily_job = dg.define_asset_job(
    "build_gold_daily",
    selection=DAILY_GOLD,
    tags=RETRY_TAGS,
    description="Build a window of days of the daily-partitioned gold models; a "
    "multi-day backfill is one run and one dbt invocation.",
)
