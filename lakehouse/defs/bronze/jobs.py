"""One ingest job per declared source: what its sensor launches, one bounded batch a run."""

from __future__ import annotations

import dagster as dg

from lakehouse.declarations.sources import DatabaseSource, LandingSource, Source, sources
from lakehouse.orchestration.k8s import run_pod_tags
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
        # one short step every few seconds: in its run pod, sized for ingestion, on the
        # cluster (no second pod start on the way from an event to gold; run_pod_tags)
        tags={**RETRY_TAGS, "lakehouse/source": name, **run_pod_tags("ingest")},
        description=f"Land one bounded batch of {name} from {what} in bronze.",
    )


ingest_jobs = [
    ingest_job(s)
    for s in (*sources().kafka, *sources().cdc, *sources().database, *sources().landing)
]
