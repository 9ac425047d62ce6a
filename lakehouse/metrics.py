"""Prometheus metrics for on-call: ``lakehouse metrics`` serves them on ``/metrics``.

What is measured, and where it is read from (no Dagster storage is needed: the run history
is data, ``lakehouse.tables.run_history``):
- Kafka lag per source and partition: the offsets committed in bronze's snapshots against
  the topic's high-water mark (one small fetch per partition, as the sensors do);
- files waiting in each landing prefix: listed versions not yet committed to bronze;
- seconds since each asset's last materialization, quality score per silver table (the
  newest ``lakehouse/quality_score``): ``ops.asset_materializations``;
- run durations and outcomes per job: ``ops.pipeline_runs``;
- quarantined rows per source, data files and snapshots per table: table metadata.

Scraping stays cheap: everything is computed at most once per ``ttl_seconds`` (default
30) behind a lock and served from the cache in between; ``lakehouse_metrics_compute_seconds``
says what a computation cost and ``lakehouse_metrics_errors`` which part failed (a broker
that is down costs its own metrics, not the scrape).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

TABLE_NAMESPACES = ("bronze", "silver", "gold", "quarantine", "ops")

# name -> (help, labels): every family the exporter serves (the Grafana test reads it)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "lakehouse_kafka_lag_records": (
        "Records in the topic after the offset committed in bronze",
        ("source", "topic", "partition"),
    ),
    "lakehouse_landing_files_waiting": (
        "Files under the landing prefix not yet ingested",
        ("source", "prefix"),
    ),
    "lakehouse_asset_seconds_since_materialization": (
        "Seconds since the asset's last recorded materialization",
        ("asset",),
    ),
    "lakehouse_run_last_duration_seconds": (
        "Duration of the job's newest finished run",
        ("job", "status"),
    ),
    "lakehouse_runs": ("Finished runs recorded in ops.pipeline_runs", ("job", "status")),
    "lakehouse_quarantined_rows": ("Rows held in the source's quarantine table", ("table",)),
    "lakehouse_quality_score": ("Newest quality score of the silver table (0-1)", ("asset",)),
    "lakehouse_table_data_files": ("Data files in the table's current snapshot", ("table",)),
    "lakehouse_table_snapshots": ("Snapshots the table's metadata keeps", ("table",)),
    "lakehouse_metrics_compute_seconds": ("Seconds the last computation of the metrics took", ()),
    "lakehouse_metrics_errors": ("1 when a part of the last computation failed", ("part",)),
}


@dataclass
class Samples:
    values: dict[str, list[tuple[tuple[str, ...], float]]] = field(default_factory=dict)

    def add(self, family: str, labels: tuple[str, ...], value: float) -> None:
        self.values.setdefault(family, []).append((labels, float(value)))


def _tables(catalog, samples: Samples) -> None:
    for namespace in TABLE_NAMESPACES:
        if (namespace,) not in catalog.list_namespaces():
            continue
        for identifier in catalog.list_tables(namespace):
            table = catalog.load_table(identifier)
            name = ".".join(identifier)
            snapshot = table.current_snapshot()
            summary = snapshot.summary if snapshot is not None and snapshot.summary else None
            files = int(summary["total-data-files"] or 0) if summary is not None else 0
            samples.add("lakehouse_table_data_files", (name,), files)
            samples.add("lakehouse_table_snapshots", (name,), len(table.metadata.snapshots))
            if namespace == "quarantine":
                rows = int(summary["total-records"] or 0) if summary is not None else 0
                samples.add("lakehouse_quarantined_rows", (name,), rows)


def _kafka(catalog, samples: Samples) -> None:
    from lakehouse.declarations.sources import sources
    from lakehouse.defs.bronze.sensors import kafka_highwater
    from lakehouse.ingest.kafka.reader import read_committed_offsets
    from lakehouse.settings import get_settings
    from resources.kafka import KafkaResource

    prefix = get_settings().kafka_topic_prefix
    for source in (*sources().kafka, *sources().cdc):
        topic = source.resolved_topic(prefix)
        committed = read_committed_offsets(catalog, source, topic)
        for partition, high in sorted(kafka_highwater(KafkaResource(), topic, committed).items()):
            lag = max(0, high - committed.get(partition, 0))
            samples.add("lakehouse_kafka_lag_records", (source.name, topic, str(partition)), lag)


def _landing(catalog, samples: Samples) -> None:
    from lakehouse.declarations.sources import sources
    from lakehouse.ingest.landing.reader import ingested_files, list_new_files
    from lakehouse.settings import get_settings
    from resources.s3 import S3Resource

    s3 = S3Resource().client()
    bucket = get_settings().landing_bucket
    for source in sources().landing:
        waiting = list_new_files(s3, bucket, source, ingested_files(catalog, source), 100_000)
        samples.add(
            "lakehouse_landing_files_waiting", (source.name, source.key_prefix), len(waiting)
        )


def _history(catalog, samples: Samples, now: datetime) -> None:
    import pyarrow.compute as pc

    from lakehouse.tables.run_history import ASSET_MATERIALIZATIONS, PIPELINE_RUNS

    if not catalog.table_exists(PIPELINE_RUNS):
        return
    runs = (
        catalog.load_table(PIPELINE_RUNS)
        .scan(selected_fields=("job", "status", "ended_at", "duration_s"))
        .to_arrow()
    )
    counts: dict[tuple[str, str], int] = {}
    newest: dict[str, dict] = {}
    for run in runs.sort_by([("ended_at", "ascending")]).to_pylist():
        counts[(run["job"], run["status"])] = counts.get((run["job"], run["status"]), 0) + 1
        newest[run["job"]] = run
    for (job, status), count in sorted(counts.items()):
        samples.add("lakehouse_runs", (job, status), count)
    for job, run in sorted(newest.items()):
        if run["duration_s"] is not None:
            samples.add(
                "lakehouse_run_last_duration_seconds", (job, run["status"]), run["duration_s"]
            )
    if not catalog.table_exists(ASSET_MATERIALIZATIONS):
        return
    done = (
        catalog.load_table(ASSET_MATERIALIZATIONS)
        .scan(selected_fields=("asset_key", "materialized_at", "quality_score"))
        .to_arrow()
    )
    for row in done.group_by("asset_key").aggregate([("materialized_at", "max")]).to_pylist():
        age = (now - row["materialized_at_max"]).total_seconds()
        samples.add("lakehouse_asset_seconds_since_materialization", (row["asset_key"],), age)
    scored = done.filter(pc.is_valid(done["quality_score"])).sort_by(
        [("materialized_at", "ascending")]
    )
    latest = {r["asset_key"]: r["quality_score"] for r in scored.to_pylist()}
    for asset, score in sorted(latest.items()):
        samples.add("lakehouse_quality_score", (asset,), score)


PARTS: dict[str, Callable] = {
    "tables": lambda catalog, samples, now: _tables(catalog, samples),
    "kafka": lambda catalog, samples, now: _kafka(catalog, samples),
    "landing": lambda catalog, samples, now: _landing(catalog, samples),
    "history": _history,
}


class LakehouseCollector(Collector):
    """Computes every family at most once per ``ttl_seconds``; serves the cache between."""

    def __init__(self, catalog_factory: Callable, ttl_seconds: float = 30.0) -> None:
        self._catalog_factory = catalog_factory
        self._ttl = ttl_seconds
        self._lock = threading.Lock()
        self._cached: Samples | None = None
        self._computed_at = 0.0

    def compute(self) -> Samples:
        began = time.monotonic()
        samples = Samples()
        catalog = self._catalog_factory()
        now = datetime.now(UTC)
        for part, measure in PARTS.items():
            try:
                measure(catalog, samples, now)
                samples.add("lakehouse_metrics_errors", (part,), 0)
            except Exception:  # one part's outage must not cost the others
                samples.add("lakehouse_metrics_errors", (part,), 1)
        samples.add("lakehouse_metrics_compute_seconds", (), time.monotonic() - began)
        return samples

    def samples(self) -> Samples:
        with self._lock:
            if self._cached is None or time.monotonic() - self._computed_at > self._ttl:
                self._cached = self.compute()
                self._computed_at = time.monotonic()
            return self._cached

    def collect(self) -> Iterator[GaugeMetricFamily]:
        cached = self.samples()
        for name, (help_text, labels) in FAMILIES.items():
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for values, value in cached.values.get(name, []):
                family.add_metric(list(values), value)
            yield family


def serve(host: str = "127.0.0.1", port: int = 9108, ttl_seconds: float = 30.0):
    """Start the exporter in a background thread; returns (server, thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    from resources.iceberg import IcebergCatalogResource

    registry = CollectorRegistry()
    registry.register(LakehouseCollector(lambda: IcebergCatalogResource().load(), ttl_seconds))
    return start_http_server(port, addr=host, registry=registry)
