"""Jobs: what sensors, schedules and the demo launch."""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.gold import gold_daily_dbt_models
from lakehouse.sources import DatabaseSource, LandingSource, Source, Sources

# Bounded retries only: a failed ingestion run is retried twice, then waits for a person.
RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}


def ingest_job_name(source: Source) -> str:
    return f"ingest_{source.bronze_name}"


def ingest_job(source: Source) -> dg.UnresolvedAssetJobDefinition:
    name = source.bronze_name
    keys = [["bronze", name]]
    if isinstance(source, DatabaseSource):
        what = f"table {source.table}"
    else:
        what = (
            "the landing bucket" if isinstance(source, LandingSource) else f"topic {source.topic}"
        )
        keys.append(["quarantine", name])
    return dg.define_asset_job(
        ingest_job_name(source),
        selection=dg.AssetSelection.assets(*keys),
        tags={**RETRY_TAGS, "lakehouse/source": name},
        description=f"Land one bounded batch of {name} from {what} in bronze.",
    )


def ingest_jobs(sources: Sources) -> list[dg.UnresolvedAssetJobDefinition]:
    return [
        ingest_job(s) for s in (*sources.kafka, *sources.cdc, *sources.database, *sources.landing)
    ]


DAILY_GOLD = dg.AssetSelection.assets(gold_daily_dbt_models)

lakehouse_job = dg.define_asset_job(
    "lakehouse",
    selection=dg.AssetSelection.all() - DAILY_GOLD,
    description="The whole graph once: ingest what is new, rebuild silver and the "
    "unpartitioned gold models (daily partitions run in build_gold_daily).",
)

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
