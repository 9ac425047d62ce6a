"""Reconciliation checks: every bronze record is accounted for downstream, nothing twice.

- ``silver.page_views``: per bronze partition (ingestion day), the bronze page-view
  rows equal silver rows + quarantined rows + duplicates removed. A bronze record is
  matched by its Kafka coordinates; a duplicate is a record whose event_id was kept
  (or quarantined) from another record. Anything else is *lost* and fails the check.
- ``silver.<cdc table>``: the table's state is the changelog applied again, from
  bronze, independently of the asset: same keys at the same LSN, counting rows the
  contract quarantined.
- ``silver.<cdc table>_history``: its current versions are ``silver.<cdc table>`` (same
  keys, same LSN and values), counting rows the contract quarantined.

All are blocking: silver that does not reconcile with bronze must not feed gold.
"""

import json
from collections import Counter, defaultdict

import dagster as dg
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import EqualTo

from lakehouse.assets.silver import read_changelog
from lakehouse.quality.pii import Masker, mask_rows
from lakehouse.sources import CdcSource, Sources
from lakehouse.transforms.cdc import apply_changes
from resources.iceberg import IcebergCatalogResource


def _scan(catalog, identifier: str, fields: tuple[str, ...]):
    try:
        return catalog.load_table(identifier).scan(selected_fields=fields).to_arrow().to_pylist()
    except NoSuchTableError:
        return []


@dg.asset_check(
    asset=["silver", "page_views"],
    blocking=True,
    description="Per bronze partition: bronze page views = silver + quarantined + deduplicated "
    "(matched by Kafka coordinates); no record lost, none in two places.",
)
def page_views_reconcile(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
    catalog = iceberg.load()
    coords = ("_kafka_partition", "_kafka_offset")
    bronze = [
        r
        for r in _scan(
            catalog,
            "bronze.clickstream",
            ("event_id", "event_type", *coords, "_ingested_at"),
        )
        if r["event_type"] == "page_view"
    ]
    silver = Counter(
        (r["_kafka_partition"], r["_kafka_offset"])
        for r in _scan(catalog, "silver.page_views", coords)
    )
    quarantined = Counter(
        (r["_kafka_partition"], r["_kafka_offset"])
        for r in _scan(catalog, "quarantine.page_views", coords)
    )
    ids_at = {(r["_kafka_partition"], r["_kafka_offset"]): r["event_id"] for r in bronze}
    accounted = {ids_at[c] for c in (*silver, *quarantined) if c in ids_at}
    per_partition: dict[str, Counter] = defaultdict(Counter)
    lost_examples = []
    for row in bronze:
        at = (row["_kafka_partition"], row["_kafka_offset"])
        counts = per_partition[row["_ingested_at"].date().isoformat()]
        counts["bronze"] += 1
        if at in silver:
            counts["silver"] += 1
        elif at in quarantined:
            counts["quarantined"] += 1
        elif row["event_id"] in accounted:
            counts["deduplicated"] += 1
        else:
            counts["lost"] += 1
            lost_examples.append({"event_id": row["event_id"], "coordinates": list(at)})
    in_both = sorted(set(silver) & set(quarantined))
    twice = sorted(c for c, n in (silver + quarantined).items() if n > 1)
    unknown = sorted(set(silver) - set(ids_at))
    lost = sum(c["lost"] for c in per_partition.values())
    return dg.AssetCheckResult(
        passed=not (lost or in_both or twice or unknown),
        metadata={
            "by_bronze_partition": dg.MetadataValue.json(
                {day: dict(c) for day, c in sorted(per_partition.items())}
            ),
            "lost_rows": lost,
            "lost_examples": dg.MetadataValue.json(lost_examples[:10]),
            "in_silver_and_quarantine": dg.MetadataValue.json([list(c) for c in in_both[:10]]),
            "counted_twice": dg.MetadataValue.json([list(c) for c in twice[:10]]),
            "silver_rows_not_in_bronze": dg.MetadataValue.json([list(c) for c in unknown[:10]]),
        },
    )


def cdc_reconcile_check(source: CdcSource) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=["silver", source.name],
        name="changelog_reconcile",
        blocking=True,
        description=f"silver.{source.name} equals the bronze changelog applied again (same keys "
        "at the same LSN), counting rows the contract quarantined.",
    )
    def _check(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
        catalog = iceberg.load()
        try:
            bronze = catalog.load_table(source.bronze_table)
        except NoSuchTableError:
            return dg.AssetCheckResult(passed=False, metadata={"error": "no bronze changelog"})
        applied = apply_changes(read_changelog(bronze, source), source.keys)
        expected_rows = mask_rows(applied.current, source.pii, Masker.from_settings())

        def identity(row: dict) -> tuple:
            return (*(str(row.get(k)) for k in source.keys), row.get("_lsn"))

        expected = Counter(identity(r) for r in expected_rows)
        fields = (*source.keys, "_lsn")
        actual = Counter(identity(r) for r in _scan(catalog, f"silver.{source.name}", fields))
        for row in _scan(catalog, f"quarantine.{source.name}", ("_raw",)):
            actual[identity(json.loads(row["_raw"]))] += 1
        missing = sorted((expected - actual).elements())
        extra = sorted((actual - expected).elements())
        return dg.AssetCheckResult(
            passed=not missing and not extra,
            metadata={
                "changelog_keys": sum(expected.values()),
                "silver_and_quarantined_keys": sum(actual.values()),
                "missing_or_stale": dg.MetadataValue.json([list(m) for m in missing[:10]]),
                "unexpected": dg.MetadataValue.json([list(e) for e in extra[:10]]),
            },
        )

    return _check


def history_reconcile_check(source: CdcSource) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=["silver", f"{source.name}_history"],
        name="history_matches_current",
        blocking=True,
        description=f"The is_current versions of silver.{source.name}_history are "
        f"silver.{source.name} (keys, LSN and every declared column), counting rows the "
        "contract quarantined.",
    )
    def _check(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
        catalog = iceberg.load()
        columns = (*source.columns, "_lsn")

        def by_key(rows) -> dict[tuple, list[dict]]:
            out: dict[tuple, list[dict]] = defaultdict(list)
            for row in rows:
                out[tuple(str(row.get(k)) for k in source.keys)].append(
                    {c: row.get(c) for c in columns}
                )
            return out

        try:
            history = catalog.load_table(f"silver.{source.name}_history")
        except NoSuchTableError:
            return dg.AssetCheckResult(passed=False, metadata={"error": "no history table"})
        versions = by_key(
            history.scan(row_filter=EqualTo("is_current", True), selected_fields=columns)
            .to_arrow()
            .to_pylist()
        )
        current = by_key(_scan(catalog, f"silver.{source.name}", columns))
        quarantined = {
            tuple(str(raw.get(k)) for k in source.keys): raw.get("_lsn")
            for raw in (
                json.loads(r["_raw"])
                for r in _scan(catalog, f"quarantine.{source.name}", ("_raw",))
            )
        }
        problems = []
        for key in sorted(set(versions) | set(current) | set(quarantined)):
            mine, theirs = versions.get(key, []), current.get(key, [])
            if key in quarantined and not theirs:
                theirs = [{"_lsn": quarantined[key]}]
                mine = [{"_lsn": v["_lsn"]} for v in mine]
            if mine != theirs:
                problems.append(
                    {"key": list(key), "history": _shown(mine), "current": _shown(theirs)}
                )
        return dg.AssetCheckResult(
            passed=not problems,
            metadata={
                "current_versions": sum(len(v) for v in versions.values()),
                "current_rows": sum(len(v) for v in current.values()),
                "rows_quarantined": len(quarantined),
                "mismatched_keys": len(problems),
                "mismatch_examples": dg.MetadataValue.json(problems[:10]),
            },
        )

    return _check


def _shown(rows: list[dict]) -> list[dict]:
    return [{k: None if v is None else str(v) for k, v in r.items()} for r in rows]


def reconciliation_checks(sources: Sources) -> list[dg.AssetChecksDefinition]:
    return [
        page_views_reconcile,
        *(cdc_reconcile_check(s) for s in sources.cdc),
        *(history_reconcile_check(s) for s in sources.cdc),
    ]
