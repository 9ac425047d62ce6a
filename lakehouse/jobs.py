"""Jobs: what sensors, schedules and the demo launch."""

from __future__ import annotations

import dagster as dg

# Bounded retries only: a failed ingestion run is retried twice, then waits for a person.
RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}

ingest_clickstream_job = dg.define_asset_job(
    "ingest_clickstream",
    selection=dg.AssetSelection.assets(["bronze", "clickstream"], ["quarantine", "clickstream"]),
    tags=RETRY_TAGS,
    description="Land one bounded batch of clickstream events in bronze.",
)

ingest_landing_job = dg.define_asset_job(
    "ingest_landing_files",
    selection=dg.AssetSelection.assets(
        ["bronze", "marketing_spend"], ["quarantine", "marketing_spend"]
    ),
    tags=RETRY_TAGS,
    description="Land new partner files from the landing bucket in bronze.",
)

lakehouse_job = dg.define_asset_job(
    "lakehouse",
    selection=dg.AssetSelection.all(),
    description="The whole graph once: ingest what is new, rebuild silver and gold.",
)

gold_job = dg.define_asset_job(
    "build_gold",
    selection=dg.AssetSelection.groups("gold"),
    tags=RETRY_TAGS,
    description="Rebuild the gold dbt models and run their tests.",
)
