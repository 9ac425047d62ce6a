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

All are blocking: silver that does not reconcile with bronze must not feed gold. Like
the contract checks they evaluate what changed since they last passed (the bronze
records appended since, the keys those changes touched; ``lakehouse.quality.scope``),
and everything with config ``full: true``. What they compute with (pyarrow, pyiceberg,
the CDC transforms) is imported when a check runs, not when the code location loads.
"""

import json
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

import dagster as dg

from lakehouse.declarations.sources import CdcSource
from lakehouse.defs.silver.contract_checks import QualityCheckConfig, last_good_snapshot
from resources.iceberg import IcebergCatalogResource

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import Table

    from lakehouse.quality.scope import Scope
    from lakehouse.transforms.cdc import OrderedChange

COORDS = ("_kafka_partition", "_kafka_offset")
OFFSET_BITS = 40  # a Kafka coordinate as one int64: partition << 40 | offset


def _scan(catalog, identifier: str, fields: tuple[str, ...], row_filter=None):
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import AlwaysTrue

    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        return []
    scan = table.scan(row_filter=row_filter or AlwaysTrue(), selected_fields=fields)
    return scan.to_arrow().to_pylist()


def _arrow(catalog, identifier: str, fields: tuple[str, ...]) -> "pa.Table | None":
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table(identifier).scan(selected_fields=fields).to_arrow()
    except NoSuchTableError:
        return None


def _at(rows: "pa.Table") -> "pa.Array":
    import pyarrow as pa
    import pyarrow.compute as pc

    partition = pc.cast(rows["_kafka_partition"], pa.int64())
    offset = pc.cast(rows["_kafka_offset"], pa.int64())
    return pc.fill_null(pc.add(pc.shift_left(partition, OFFSET_BITS), offset), -1)


def _coordinates(at: int) -> list[int]:
    return [at >> OFFSET_BITS, at & ((1 << OFFSET_BITS) - 1)]


def _since(context: dg.AssetCheckExecutionContext, table: "Table") -> int | None:
    return last_good_snapshot(context.instance, table, [(context.check_specs[0].key, False)])


def _checked(table: "Table", scope: dict[str, Any]) -> dict[str, Any]:
    from lakehouse.quality.scope import CHECKED_SNAPSHOT, SCOPE

    snapshot = table.current_snapshot()
    return {
        CHECKED_SNAPSHOT: str(snapshot.snapshot_id if snapshot else ""),
        SCOPE: dg.MetadataValue.json(scope),
    }


@dg.asset_check(
    asset=["silver", "page_views"],
    blocking=True,
    description="Per bronze partition: bronze page views = silver + quarantined + deduplicated "
    "(matched by Kafka coordinates); no record lost, none in two places.",
)
def page_views_reconcile(
    context: dg.AssetCheckExecutionContext,
    config: QualityCheckConfig,
    iceberg: IcebergCatalogResource,
) -> dg.AssetCheckResult:
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import AlwaysTrue

    from lakehouse.quality.scope import new_bronze_runs, runs_filter

    catalog = iceberg.load()
    try:
        silver_table = catalog.load_table("silver.page_views")
        bronze_table = catalog.load_table("bronze.clickstream")
    except NoSuchTableError as missing:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(missing)})
    if config.full:
        runs, reason = None, "requested by the run's config (full: true)"
    else:
        runs, reason = new_bronze_runs(silver_table, bronze_table, _since(context, silver_table))
    bronze = bronze_table.scan(
        row_filter=AlwaysTrue() if runs is None else runs_filter(runs),
        selected_fields=("event_id", "event_type", *COORDS, "_ingested_at"),
    ).to_arrow()
    bronze = bronze.filter(pc.equal(bronze["event_type"], "page_view"))
    silver = silver_table.scan(selected_fields=("event_id", *COORDS)).to_arrow()
    quarantine = _arrow(catalog, "quarantine.page_views", (*COORDS, "_raw"))
    if quarantine is None:
        quarantine = pa.table({"_kafka_partition": [], "_kafka_offset": [], "_raw": []})
    bronze_at, silver_at, quarantine_at = _at(bronze), _at(silver), _at(quarantine)

    in_silver = pc.is_in(bronze_at, value_set=silver_at)
    in_quarantine = pc.and_(pc.invert(in_silver), pc.is_in(bronze_at, value_set=quarantine_at))
    accounted = pa.chunked_array(
        [
            silver["event_id"].combine_chunks().cast(pa.string()),
            pa.array(_quarantined_ids(quarantine), pa.string()),
            bronze.filter(pc.is_in(bronze_at, value_set=quarantine_at))["event_id"]
            .combine_chunks()
            .cast(pa.string()),
        ]
    )
    elsewhere = pc.is_in(bronze["event_id"], value_set=accounted.combine_chunks())
    status = pc.if_else(
        in_silver,
        "silver",
        pc.if_else(in_quarantine, "quarantined", pc.if_else(elsewhere, "deduplicated", "lost")),
    )
    days = pc.strftime(bronze["_ingested_at"], format="%Y-%m-%d")
    tally = (
        pa.table({"day": days, "status": status})
        .group_by(["day", "status"])
        .aggregate([("status", "count")])
    )
    per_partition: dict[str, Counter] = defaultdict(Counter)
    for row in tally.to_pylist():
        per_partition[row["day"]]["bronze"] += row["status_count"]
        per_partition[row["day"]][row["status"]] += row["status_count"]
    lost_rows = bronze.filter(pc.equal(status, "lost"))
    lost_examples = [
        {"event_id": r["event_id"], "coordinates": [r["_kafka_partition"], r["_kafka_offset"]]}
        for r in lost_rows.slice(0, 10).to_pylist()
    ]

    both = pc.filter(silver_at, pc.is_in(silver_at, value_set=quarantine_at))
    placed = pa.chunked_array([silver_at, quarantine_at]).combine_chunks()
    counts = pc.value_counts(placed)
    twice = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if runs is not None:  # incremental: only the records of the range
        both = pc.filter(both, pc.is_in(both, value_set=bronze_at))
        twice = pc.filter(twice, pc.is_in(twice, value_set=bronze_at))
        unknown = pa.array([], pa.int64())  # needs all of bronze: the full check's job
    else:
        unknown = pc.filter(silver_at, pc.invert(pc.is_in(silver_at, value_set=bronze_at)))
    in_both, counted_twice, not_in_bronze = (sorted(a.to_pylist()) for a in (both, twice, unknown))
    lost = lost_rows.num_rows
    scope = {
        "mode": "full" if runs is None else "incremental",
        "reason": reason,
        "bronze_rows_checked": bronze.num_rows,
    }
    return dg.AssetCheckResult(
        passed=not (lost or in_both or counted_twice or not_in_bronze),
        metadata={
            **_checked(silver_table, scope),
            "by_bronze_partition": dg.MetadataValue.json(
                {day: dict(c) for day, c in sorted(per_partition.items())}
            ),
            "lost_rows": lost,
            "lost_examples": dg.MetadataValue.json(lost_examples),
            "in_silver_and_quarantine": dg.MetadataValue.json(
                [_coordinates(c) for c in in_both[:10]]
            ),
            "counted_twice": dg.MetadataValue.json([_coordinates(c) for c in counted_twice[:10]]),
            "silver_rows_not_in_bronze": dg.MetadataValue.json(
                [_coordinates(c) for c in not_in_bronze[:10]]
            ),
        },
    )


def _quarantined_ids(quarantine: "pa.Table") -> list[str]:
    """Event ids of quarantined page views (their raw JSON keeps the id, PII masked)."""
    from lakehouse.ingest.records import json_object

    out = []
    for raw in quarantine["_raw"].to_pylist():
        document = json_object(raw)
        if document is not None and isinstance(document.get("event_id"), str):
            out.append(document["event_id"])
    return out


def _key_of(source: CdcSource, text: str | None) -> str | None:
    """The first key column's value in a Debezium message key (with or without schema)."""
    try:
        document = json.loads(text) if text else None
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("payload"), dict):
        document = document["payload"]
    value = document.get(source.keys[0]) if isinstance(document, dict) else None
    return None if value is None else str(value)


def changes_of_keys(bronze: "Table", source: CdcSource, keys: set[str]) -> "list[OrderedChange]":
    """The changelog of those keys, plus every change without a readable message key
    (truncates; producers that send none): a superset, the caller keeps its keys."""
    import pyarrow as pa

    from lakehouse.ingest.debezium import parse_change
    from lakehouse.transforms.cdc import OrderedChange

    log = bronze.scan(selected_fields=("key", "op", "payload", *COORDS)).to_arrow()
    wanted = [
        op != "tombstone" and (key is None or key in keys)
        for op, key in zip(
            log["op"].to_pylist(),
            (_key_of(source, k) for k in log["key"].to_pylist()),
            strict=True,
        )
    ]
    log = log.filter(pa.array(wanted, pa.bool_()))
    return [
        OrderedChange(
            parse_change(payload.encode(), source.columns, source.connector), partition, offset
        )
        for payload, partition, offset in zip(
            log["payload"].to_pylist(),
            log["_kafka_partition"].to_pylist(),
            log["_kafka_offset"].to_pylist(),
            strict=True,
        )
    ]


def _cdc_scope(context, config: QualityCheckConfig, catalog, table: "Table") -> "Scope":
    from lakehouse.quality.scope import changed_scope, full

    if config.full:
        return full("requested by the run's config (full: true)")
    identifier = ".".join(table.name())
    return changed_scope(catalog, table, identifier, _since(context, table))


def _in_scope(scope: "Scope", source: CdcSource, row: dict) -> bool:
    return scope.full or str(row.get(source.keys[0])) in {str(v) for v in scope.values}


def cdc_reconcile_check(source: CdcSource) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=["silver", source.name],
        name="changelog_reconcile",
        blocking=True,
        description=f"silver.{source.name} equals the bronze changelog applied again (same keys "
        "at the same LSN), counting rows the contract quarantined.",
    )
    def _check(
        context: dg.AssetCheckExecutionContext,
        config: QualityCheckConfig,
        iceberg: IcebergCatalogResource,
    ) -> dg.AssetCheckResult:
        from pyiceberg.exceptions import NoSuchTableError

        from lakehouse.transforms.cdc import apply_changes, read_changelog
        from lakehouse.transforms.masking import Masker, mask_rows

        catalog = iceberg.load()
        try:
            bronze = catalog.load_table(source.bronze_table)
            silver = catalog.load_table(f"silver.{source.name}")
        except NoSuchTableError as missing:
            return dg.AssetCheckResult(passed=False, metadata={"error": str(missing)})
        scope = _cdc_scope(context, config, catalog, silver)
        if scope.full:
            changes = read_changelog(bronze, source)
        else:
            changes = changes_of_keys(bronze, source, {str(v) for v in scope.values})
        applied = apply_changes(changes, source.keys)
        current = [r for r in applied.current if _in_scope(scope, source, r)]
        expected_rows = mask_rows(current, source.pii, Masker.from_settings())

        def identity(row: dict) -> tuple:
            return (*(str(row.get(k)) for k in source.keys), row.get("_lsn"))

        expected = Counter(identity(r) for r in expected_rows)
        fields = (*source.keys, "_lsn")
        rows = silver.scan(row_filter=scope.row_filter, selected_fields=fields).to_arrow()
        actual = Counter(identity(r) for r in rows.to_pylist())
        for row in _scan(catalog, f"quarantine.{source.name}", ("_raw",)):
            raw = json.loads(row["_raw"])
            if _in_scope(scope, source, raw):
                actual[identity(raw)] += 1
        missing = sorted((expected - actual).elements())
        extra = sorted((actual - expected).elements())
        return dg.AssetCheckResult(
            passed=not missing and not extra,
            metadata={
                **_checked(silver, {**scope.metadata(), "changes_applied": len(changes)}),
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
    def _check(
        context: dg.AssetCheckExecutionContext,
        config: QualityCheckConfig,
        iceberg: IcebergCatalogResource,
    ) -> dg.AssetCheckResult:
        from pyiceberg.exceptions import NoSuchTableError
        from pyiceberg.expressions import And, EqualTo

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
        scope = _cdc_scope(context, config, catalog, history)
        current_versions = And(EqualTo("is_current", True), scope.row_filter)
        versions = by_key(
            history.scan(row_filter=current_versions, selected_fields=columns)
            .to_arrow()
            .to_pylist()
        )
        current = by_key(_scan(catalog, f"silver.{source.name}", columns, scope.row_filter))
        quarantined = {
            tuple(str(raw.get(k)) for k in source.keys): raw.get("_lsn")
            for raw in (
                json.loads(r["_raw"])
                for r in _scan(catalog, f"quarantine.{source.name}", ("_raw",))
            )
            if _in_scope(scope, source, raw)
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
                **_checked(history, scope.metadata()),
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
