"""One ingest job per declared source: what its sensor launches, one bounded batch a run."""

from __future__ import annotations

import dagster as dg

from lakehouse.declarations.sources import DatabaseSource, LandingSource, Source, sources
from lakehouse.orchestration.retries import RETRY_TAGS


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


ingest_jobs = [
    ingest_job(s)
    for s in (*sources().kafka, *sources().cdc, *sources().database, *sources().landing)
]
