"""Checks on bronze: the clickstream's exactly-once accounting, and every source's freshness."""

from collections import Counter

import dagster as dg

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import sources
from lakehouse.orchestration.freshness import BRONZE_WINDOW, last_update_checks
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource


@dg.asset_check(
    asset=["bronze", "clickstream"],
    blocking=True,
    description="Every Kafka offset below the committed position is in bronze or quarantine "
    "exactly once: no record lost, none duplicated.",
)
def clickstream_offsets_exactly_once(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
    from lakehouse.tables.commits import committed_position, ensure_table

    catalog = iceberg.load()
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(get_settings().kafka_topic_prefix)
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
    committed = {int(p): int(o) for p, o in (committed_position(bronze, topic) or {}).items()}
    seen: Counter[tuple[int, int]] = Counter()
    for table in (bronze, quarantine):
        coords = table.scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
        seen.update(
            zip(
                coords["_kafka_partition"].to_pylist(),
                coords["_kafka_offset"].to_pylist(),
                strict=True,
            )
        )
    duplicates = sorted(k for k, n in seen.items() if n > 1)
    gaps: dict[str, int] = {}
    for partition, next_offset in committed.items():
        offsets = [o for (p, o) in seen if p == partition]
        first = min(offsets, default=next_offset)
        missing = (next_offset - first) - len(offsets)
        if missing:
            gaps[str(partition)] = missing
    return dg.AssetCheckResult(
        passed=not duplicates and not gaps,
        metadata={
            "records_accounted": sum(seen.values()),
            "duplicate_offsets": len(duplicates),
            "duplicate_examples": dg.MetadataValue.json([list(d) for d in duplicates[:10]]),
            "missing_offsets_by_partition": dg.MetadataValue.json(gaps),
            "committed_offsets": dg.MetadataValue.json({str(k): v for k, v in committed.items()}),
        },
    )


def bronze_asset_keys() -> list[dg.AssetKey]:
    every = (*sources().kafka, *sources().cdc, *sources().database, *sources().landing)
    return [dg.AssetKey(["bronze", s.bronze_name]) for s in every]


bronze_freshness_checks = last_update_checks(bronze_asset_keys(), BRONZE_WINDOW)
