"""Incremental silver equals a full rebuild: the same bronze, split into random increments
and applied one after another, gives exactly the tables one full rebuild gives.

The CDC logic is checked on hundreds of generated change streams in memory (inserts,
updates with unchanged TOAST values, deletes, re-inserts, changes sharing a commit time,
redeliveries, reordering, truncates); each silver kind is then checked end to end on real
Iceberg tables, read back and compared row for row.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.declarations.pii import PiiPolicy
from lakehouse.declarations.sources import sources
from lakehouse.defs.silver.builds import silver_shape
from lakehouse.demo.cdc import generate_shop_changes
from lakehouse.demo.clickstream import generate
from lakehouse.ingest.debezium import UNAVAILABLE, ChangeEvent
from lakehouse.ingest.kafka.decode import bronze_row
from lakehouse.ingest.records import RecordRejected
from lakehouse.quality.contracts import contract_for, default_contract
from lakehouse.silver.cdc import CdcBuild
from lakehouse.silver.page_views import PageViewsBuild
from lakehouse.silver.typed import TypedBuild
from lakehouse.tables.commits import append_with_position, ensure_table
from lakehouse.tables.increments import FULL, INCREMENTAL
from lakehouse.transforms.cdc import (
    VERSION_COLUMNS,
    OrderedChange,
    apply_changes,
    key_of,
    late_change,
    new_keys,
)
from resources.iceberg import IcebergCatalogResource

KEYS = ("id",)


# --- the CDC logic, on generated change streams ----------------------------------------


def _stream(rng: random.Random) -> list[ChangeEvent]:
    """Changes a database would emit, in commit (LSN) order."""
    rows: dict[int, dict[str, Any]] = {}
    lsn, ts = 100, 1_000_000
    out = []
    for _ in range(rng.randint(5, 60)):
        lsn += rng.randint(1, 5)
        if rng.random() < 0.7:
            ts += rng.randint(1, 3_000)  # else: the same transaction, the same commit time
        if rng.random() < 0.02:
            out.append(ChangeEvent("t", None, None, lsn, ts, None))
            rows.clear()
            continue
        key = rng.randint(1, 8)
        if key not in rows:
            row = {"id": key, "name": f"n{lsn}", "notes": f"long{lsn}"}
            rows[key] = row
            out.append(ChangeEvent(rng.choice("cr"), None, dict(row), lsn, ts, None))
        elif rng.random() < 0.25:
            out.append(ChangeEvent("d", dict(rows.pop(key)), None, lsn, ts, None))
        else:
            row = {**rows[key], "name": f"n{lsn}"}
            after = dict(row)
            if rng.random() < 0.5:
                after["notes"] = UNAVAILABLE  # unchanged TOAST column
            else:
                row["notes"] = after["notes"] = f"long{lsn}"
            rows[key] = row
            out.append(ChangeEvent("u", None, after, lsn, ts, None))
    return out


def _delivered(rng: random.Random, events: list[ChangeEvent]) -> list[OrderedChange]:
    """At-least-once delivery: reordered within small windows, some changes twice."""
    sent = list(events)
    for event in events:
        if rng.random() < 0.1:
            sent.insert(rng.randint(0, len(sent)), event)  # a redelivery, early or late
    for i in range(0, len(sent), 4):
        window = sent[i : i + rng.randint(1, 4)]
        rng.shuffle(window)
        sent[i : i + len(window)] = window
    return [OrderedChange(e, 0, offset) for offset, e in enumerate(sent)]


def _split(rng: random.Random, items: list) -> list[list]:
    cuts = sorted(rng.sample(range(1, len(items)), min(len(items) - 1, rng.randint(0, 6))))
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True)]


def _normalized(current, history) -> tuple[list, list]:
    rows = sorted((sorted(r.items()) for r in current), key=repr)
    versions = sorted((sorted(v.items()) for v in history), key=repr)
    return rows, versions


def _incrementally(increments: list[list[OrderedChange]]) -> tuple[list, list, int]:
    """What the incremental build stores: touched keys replaced after every increment."""
    current: dict[tuple, dict] = {}
    history: dict[tuple, list[dict]] = {}
    seen: list[OrderedChange] = []
    fast = 0

    def rebuild() -> None:
        applied = apply_changes(seen, KEYS)
        current.clear()
        history.clear()
        current.update({key_of_row(r): r for r in applied.current})
        for version in applied.history:
            history.setdefault(key_of_row(version), []).append(version)

    for increment in increments:
        seen += increment
        touched = {key_of(c.event, KEYS) for c in increment if c.event.op != "t"}
        # as the build reads them: each key's open version, else its last closed one
        stored = {
            k: [v for v in history[k] if v["is_current"]] or history[k][-1:]
            for k in touched
            if history.get(k)
        }
        if late_change(increment, KEYS, stored):
            stored = {k: history[k] for k in touched if k in history}  # every version
            if late_change(increment, KEYS, stored):
                rebuild()
                continue
        fresh, floor = new_keys(increment, KEYS, stored)
        earlier = [  # deletes and truncates already in bronze that these changes precede
            c
            for c in seen
            if floor is not None
            and c.event.lsn > floor
            and (c.event.op == "t" or (c.event.op == "d" and key_of(c.event, KEYS) in fresh))
        ]
        if any(c.event.op == "t" for c in earlier):
            rebuild()
            continue
        fast += 1
        applied = apply_changes([*increment, *earlier], KEYS, stored)
        # as the build writes them: open versions replaced, closed ones kept, new appended
        unchanged = {_identity(v) for vs in stored.values() for v in vs if not v["is_current"]}
        for key in touched | set(stored):
            current.pop(key, None)
            history[key] = [v for v in history.get(key, []) if not v["is_current"]]
        for row in applied.current:
            current[key_of_row(row)] = row
        for version in applied.history:
            if _identity(version) not in unchanged:
                history.setdefault(key_of_row(version), []).append(version)
        for key in list(history):
            history[key].sort(key=lambda v: (v["valid_from"], v["_lsn"]))
    every = [v for versions in history.values() for v in versions]
    return list(current.values()), every, fast


def _identity(version: dict) -> tuple:
    return (key_of_row(version), version["_lsn"], version["_op"], version["valid_from"])


def key_of_row(row: dict) -> tuple:
    return tuple(row[k] for k in KEYS)


def test_generated_change_streams_applied_in_increments_equal_one_full_rebuild():
    cases, fast, increments = 400, 0, 0
    for seed in range(cases):
        rng = random.Random(seed)
        delivered = _delivered(rng, _stream(rng))
        split = _split(rng, delivered)
        full = apply_changes(delivered, KEYS)
        current, history, applied_fast = _incrementally(split)
        assert _normalized(current, history) == _normalized(full.current, full.history), seed
        fast += applied_fast
        increments += len(split)
    # most increments take the incremental path; the late ones fall back, and are exact too
    assert fast > increments * 0.6, (fast, increments)


def test_a_late_change_or_a_truncate_is_named_as_the_reason_to_rebuild():
    insert = ChangeEvent("c", None, {"id": 1, "name": "a"}, 10, 1_000, None)
    update = ChangeEvent("u", None, {"id": 1, "name": "b"}, 20, 2_000, None)
    applied = apply_changes([OrderedChange(update, 0, 1)], KEYS)
    stored = {(1,): applied.history}
    late = late_change([OrderedChange(insert, 0, 0)], KEYS, stored)
    assert late and "older than silver's" in late
    duplicate = late_change([OrderedChange(update, 0, 5)], KEYS, stored)
    assert duplicate is None  # a redelivery of an applied change is harmless
    truncate = ChangeEvent("t", None, None, 30, 3_000, None)
    assert "truncate" in late_change([OrderedChange(truncate, 0, 2)], KEYS, stored)
    assert all(c not in VERSION_COLUMNS for c in applied.current[0])


# --- each silver kind, end to end on Iceberg -------------------------------------------


def _kafka_lineage(source, partition: int, offset: int, ingested: datetime, run: str) -> dict:
    return {
        "_source": source.name,
        "_kafka_topic": source.topic,
        "_kafka_partition": partition,
        "_kafka_offset": offset,
        "_kafka_timestamp": ingested,
        "_ingested_at": ingested,
        "_run_id": run,
    }


def _read(catalog, name: str, drop: tuple[str, ...] = ()) -> list:
    rows = catalog.load_table(name).scan().to_arrow().to_pylist()
    return sorted(sorted((k, repr(v)) for k, v in r.items() if k not in drop) for r in rows)


QUARANTINE_RUN_COLUMNS = ("_ingested_at", "_run_id")


def _compare_with_full(catalog, build, names: list[str]) -> dict:
    before = {n: _read(catalog, n, QUARANTINE_RUN_COLUMNS) for n in names}
    rebuilt = build.run(full=True)
    assert rebuilt.plan.mode == FULL
    after = {n: _read(catalog, n, QUARANTINE_RUN_COLUMNS) for n in names}
    for name in names:
        assert before[name] == after[name], name
    return before


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_page_views_in_increments_equal_a_full_rebuild(lakehouse_env, seed):
    catalog = IcebergCatalogResource().load()
    source = sources().kafka_source("clickstream")
    rng = random.Random(seed)
    rows, offsets = [], {0: 0, 1: 0}
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for message in generate(scale=1, seed=seed)[:900]:
        try:
            row = bronze_row(source, SimpleNamespace(value=message.value, key=message.key))
        except RecordRejected:
            continue  # bronze quarantines it
        partition = rng.choice((0, 1))
        rows.append((row, partition, offsets[partition]))
        offsets[partition] += 1
        if rng.random() < 0.05:  # the same event again, at an earlier or a later position
            other = 1 - partition
            rows.append((row, other, offsets[other]))
            offsets[other] += 1
    batches = _split(rng, rows)
    contract = contract_for("silver.page_views")
    build = PageViewsBuild(
        catalog, source, silver_shape(source, contract), "silver-run", contract=contract
    )
    modes = []
    for n, batch in enumerate(batches):
        at = start + timedelta(minutes=n)
        landed = [
            {**row, **_kafka_lineage(source, partition, offset, at, f"bronze-{n}")}
            for row, partition, offset in batch
        ]
        _land_one(catalog, source, landed, n)
        built = build.run()
        modes.append(built.plan.mode)
    assert modes[0] == FULL and set(modes[1:]) <= {INCREMENTAL}
    tables = _compare_with_full(catalog, build, ["silver.page_views", "quarantine.page_views"])
    assert len(tables["silver.page_views"]) > 500


def _land_one(catalog, source, rows: list[dict], n: int) -> None:
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    table = pa.Table.from_pylist(rows, schema=source.layout.arrow_schema())
    append_with_position(bronze, table, "test", {"batch": n}, f"bronze-{n}")


def _land_messages(catalog, source, messages, n: int, offset: int, at: datetime) -> int:
    """Kafka messages (``value``, ``key``) as bronze batch ``n`` from partition 0's
    ``offset``, ingested ``at``; returns the next offset."""
    rows = [
        {
            **bronze_row(source, SimpleNamespace(value=message.value, key=message.key)),
            **_kafka_lineage(source, 0, offset + i, at, f"bronze-{n}"),
        }
        for i, message in enumerate(messages)
    ]
    _land_one(catalog, source, rows, n)
    return offset + len(rows)


@pytest.mark.parametrize(("seed", "pii_key"), [(4, False), (5, False), (4, True), (7, True)])
def test_cdc_in_increments_equals_a_full_rebuild(lakehouse_env, seed, pii_key):
    """``pii_key``: the key column itself is hashed, so silver holds keys in masked form
    and every look-up of a change's stored versions must mask its key first."""
    catalog = IcebergCatalogResource().load()
    source = sources().cdc_source("customers")
    contract = contract_for("silver.customers")
    if pii_key:
        source = source.model_copy(update={"pii": {**source.pii, "customer_id": PiiPolicy.HASH}})
        contract = default_contract(source)
    messages, _ = generate_shop_changes(snapshot=30, steps=200, seed=seed, tables=("customers",))
    rng = random.Random(seed)
    delivered = list(messages)
    for message in messages:
        if rng.random() < 0.05:  # redelivered, some time after the first delivery
            first = delivered.index(message)
            delivered.insert(rng.randint(first + 1, len(delivered)), message)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    build = CdcBuild(
        catalog, source, silver_shape(source, contract), "silver-run", contract=contract
    )
    modes = []
    offset = 0
    for n, batch in enumerate(_split(rng, delivered)):
        offset = _land_messages(catalog, source, batch, n, offset, start + timedelta(minutes=n))
        modes.append(build.run().plan.mode)
    assert modes[0] == FULL and INCREMENTAL in modes[1:]
    names = ["silver.customers", "silver.customers_history", "quarantine.customers"]
    tables = _compare_with_full(catalog, build, names)
    assert tables["silver.customers"] and tables["silver.customers_history"]


def test_typed_landing_silver_in_increments_equals_a_full_rebuild(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    source = sources().landing_source("marketing_spend")
    rng = random.Random(9)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    build = TypedBuild(catalog, source, silver_shape(source, None), "silver-run")
    modes = []
    for n in range(6):
        rows = []
        for row_number in range(40):
            day = date(2026, 11, 1) + timedelta(days=rng.randint(0, 5))
            rows.append(
                {
                    "spend_date": day.isoformat(),
                    "channel": rng.choice(["search", "social", "email"]),
                    "campaign": f"c{rng.randint(1, 4)}",
                    "spend": str(Decimal(rng.randint(100, 99_999)) / 100),
                    "currency": "EUR",
                    "_source": source.name,
                    "_file": f"s3://landing/marketing_spend/{n}.csv",
                    "_row": row_number,
                    "_ingested_at": start + timedelta(minutes=n),
                    "_run_id": f"bronze-{n}",
                }
            )
        _land_one(catalog, source, rows, n)
        built = build.run()
        modes.append(built.plan.mode)
    assert modes == [FULL, *[INCREMENTAL] * 5]
    tables = _compare_with_full(catalog, build, ["silver.marketing_spend"])
    assert len(tables["silver.marketing_spend"]) > 40


def test_a_changed_shape_or_an_expired_bronze_snapshot_rebuilds_and_says_why(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    source = sources().landing_source("marketing_spend")
    row = {
        "spend_date": "2026-11-01",
        "channel": "search",
        "campaign": "c1",
        "spend": "1.00",
        "currency": "EUR",
        "_source": source.name,
        "_file": "f",
        "_row": 0,
        "_ingested_at": datetime(2026, 11, 1, tzinfo=UTC),
        "_run_id": "bronze-0",
    }
    _land_one(catalog, source, [row], 0)
    build = TypedBuild(catalog, source, silver_shape(source, None), "r")
    assert build.run().plan.reason == "first build"
    assert build.run().plan.reason == "nothing new in bronze"
    changed = TypedBuild(catalog, source, {**build.shape, "logic": "other"}, "r")
    assert changed.run().plan.reason == "what shapes the table changed: logic"
    _land_one(catalog, source, [{**row, "_row": 1}], 1)
    bronze = catalog.load_table(source.bronze_table)
    recorded = int(
        catalog.load_table("silver.marketing_spend")
        .current_snapshot()
        .summary["lakehouse.bronze-snapshot-id"]
    )
    # expire the recorded snapshot and its parent: the range can no longer be listed
    newest = bronze.current_snapshot().snapshot_id
    expired = [s.snapshot_id for s in bronze.snapshots() if s.snapshot_id != newest]
    assert recorded in expired
    bronze.maintenance.expire_snapshots().by_ids(expired).commit()
    plan = changed.run().plan
    assert plan.mode == FULL and "expired or no longer an ancestor" in plan.reason
    summary = catalog.load_table("silver.marketing_spend").current_snapshot().summary
    assert json.loads(summary["lakehouse.silver-shape"]) == changed.shape


@pytest.mark.parametrize("touched", [5, 300])
def test_replacing_a_few_or_many_keys_leaves_every_other_row(lakehouse_env, touched):
    """Few keys: a filtered overwrite; many: read, drop in Arrow, overwrite (same result)."""
    from pyiceberg.expressions import EqualTo
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import IdentityTransform
    from pyiceberg.types import BooleanType, LongType, NestedField, StringType

    from lakehouse.tables.replace import FEW_KEYS, replace_keys

    catalog = IcebergCatalogResource().load()
    schema = Schema(
        NestedField(1, "a", LongType(), required=False),
        NestedField(2, "b", StringType(), required=False),
        NestedField(3, "v", StringType(), required=False),
        NestedField(4, "open", BooleanType(), required=False),
    )
    spec = PartitionSpec(PartitionField(4, 1000, IdentityTransform(), "open"))
    catalog.create_namespace_if_not_exists("silver")
    table = catalog.create_table("silver.replace_test", schema=schema, partition_spec=spec)
    stored = [{"a": i, "b": f"x{i % 3}", "v": "old", "open": i % 2 == 0} for i in range(1_000)]
    table.append(pa.Table.from_pylist(stored, schema=schema.as_arrow()))
    keys = {(i, f"x{i % 3}") for i in range(0, 2 * touched, 2)}  # open rows only
    new = [{"a": a, "b": b, "v": "new", "open": True} for a, b in keys]
    new += [{"a": 5_000, "b": "x0", "v": "added", "open": False}]
    replace_keys(
        table,
        pa.Table.from_pylist(new, schema=schema.as_arrow()),
        ("a", "b"),
        keys,
        {"lakehouse.run-id": "r"},
        within=EqualTo("open", True),
    )
    rows = {(r["a"], r["b"]): r for r in table.scan().to_arrow().to_pylist()}
    assert (touched > FEW_KEYS) == (len(keys) > FEW_KEYS)
    assert len(rows) == 1_001
    assert all(rows[k]["v"] == "new" for k in keys)
    assert sum(r["v"] == "old" for r in rows.values()) == 1_000 - len(keys)
    assert rows[(5_000, "x0")]["v"] == "added"
    assert table.current_snapshot().summary["lakehouse.run-id"] == "r"
