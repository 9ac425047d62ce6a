"""Debezium CDC: decoding the connector's envelope, applying changes, and the whole path
from a real PostgreSQL table through Kafka and bronze to silver."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import psycopg
import pytest

from lakehouse.declarations.sources import sources
from lakehouse.demo.cdc import ShopChanges, envelope, generate_changes
from lakehouse.ingest.debezium import UNAVAILABLE, ChangeEvent, parse_change
from lakehouse.ingest.kafka.reader import ingest_kafka_batch
from lakehouse.ingest.records import RecordRejected
from lakehouse.transforms.cdc import OrderedChange, apply_changes
from lakehouse.transforms.masking import Masker
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource

CUSTOMERS = sources().cdc_source("customers")
ROW = {
    "customer_id": "c-1",
    "email": "a@example.com",
    "full_name": "A",
    "country": "DE",
    "credit": Decimal("-12.34"),
    "signup_date": date(2025, 2, 3),
    "updated_at": datetime(2026, 11, 1, 10, 0, 0, 123456),
    "notes": "long text",
}


@pytest.mark.parametrize("with_schema", [True, False])
def test_envelope_values_decode_per_debezium_type_mappings(with_schema):
    value = envelope("c", None, ROW, 1000, 1_700_000_000_000, 7, with_schema)
    raw = value["payload"] if with_schema else value
    assert (
        raw["after"]["credit"] == base64.b64encode((-1234).to_bytes(2, "big", signed=True)).decode()
    )
    assert raw["after"]["signup_date"] == (date(2025, 2, 3) - date(1970, 1, 1)).days
    change = parse_change(json.dumps(value).encode(), CUSTOMERS.columns)
    assert change.op == "c" and change.lsn == 1000 and change.tx_id == 7
    assert change.after["credit"] == Decimal("-12.34")
    assert change.after["signup_date"] == date(2025, 2, 3)
    assert change.after["updated_at"] == datetime(2026, 11, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_toast_placeholder_tombstone_and_bad_envelopes():
    value = envelope("u", None, ROW, 5, 1, 1, True, unchanged_toast={"notes"})
    assert parse_change(json.dumps(value).encode(), CUSTOMERS.columns).after["notes"] is UNAVAILABLE
    assert parse_change(None, CUSTOMERS.columns) is None  # tombstone
    wrapped_tombstone = json.dumps({"schema": None, "payload": None}).encode()
    assert parse_change(wrapped_tombstone, CUSTOMERS.columns) is None
    for bad, rule in [
        (b"{", "json"),
        (b'{"op": "c", "after": ' + b"[" * 5000 + b"]" * 5000 + b"}", "json"),  # too deep
        (b'{"op": "x", "after": {}}', "envelope"),
        (b'{"op": "c", "after": null}', "envelope"),
        (b'{"op": "c", "after": {"credit": "%%%"}}', "decode"),
    ]:
        with pytest.raises(RecordRejected) as rejected:
            parse_change(bad, CUSTOMERS.columns)
        assert rejected.value.rule == rule


def _change(op, key, lsn, ts=0, **values):
    image = {"customer_id": key, **values}
    return ChangeEvent(
        op=op,
        before=image if op == "d" else None,
        after=None if op in ("d", "t") else image,
        lsn=lsn,
        ts_ms=ts or lsn,
        tx_id=None,
    )


def test_apply_orders_by_lsn_skips_duplicates_carries_toast_and_truncates():
    events = [
        _change("c", "a", 10, country="DE", notes="n1"),
        _change("u", "a", 30, country="FR", notes=UNAVAILABLE),
        _change("c", "b", 20, country="NL", notes=None),
        _change("u", "a", 30, country="FR", notes=UNAVAILABLE),  # delivered twice
        _change("d", "b", 40),
        _change("c", "c", 15, country="US", notes=None),
    ]
    shuffled = [OrderedChange(e, 0, i) for i, e in enumerate(events)]
    random.Random(1).shuffle(shuffled)
    applied = apply_changes(shuffled, ("customer_id",))
    assert [(r["customer_id"], r["country"], r["notes"]) for r in applied.current] == [
        ("a", "FR", "n1"),
        ("c", "US", None),
    ]
    assert applied.duplicates_skipped == 1 and applied.toast_values_carried == 1
    versions = [(v["customer_id"], v["country"], v["is_current"]) for v in applied.history]
    assert versions == [
        ("a", "DE", False),
        ("a", "FR", True),
        ("b", "NL", False),
        ("c", "US", True),
    ]
    closed_b = next(v for v in applied.history if v["customer_id"] == "b")
    assert closed_b["valid_to"] is not None

    truncate = ChangeEvent("t", None, None, 50, 50, None)
    after = apply_changes([*shuffled, OrderedChange(truncate, 0, 99)], ("customer_id",))
    assert after.current == [] and not any(v["is_current"] for v in after.history)


@pytest.fixture
def shop_db(make_database):
    return make_database("shop_cdc")


@pytest.mark.timeout(600)
def test_changes_from_postgres_shuffled_yield_the_database_final_state(
    lakehouse_env, shop_db, defs
):
    settings = lakehouse_env
    with psycopg.connect(shop_db) as conn:
        messages, _ = generate_changes(snapshot=30, steps=250, seed=11, conn=conn)
        final = {
            row[0]: row
            for row in conn.execute(
                "select customer_id, email, full_name, country, credit, signup_date, "
                "updated_at, notes from customers"
            ).fetchall()
        }
    assert any(m.value is None for m in messages)  # tombstones after deletes
    # allowed disorder: events reordered within windows of 8, and some delivered twice
    rng = random.Random(5)
    disordered = []
    for i in range(0, len(messages), 8):
        window = messages[i : i + 8]
        rng.shuffle(window)
        disordered += window
    disordered += rng.sample(messages, 20)
    topic = CUSTOMERS.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    for message in disordered:
        producer.send(topic, key=message.key, value=message.value)
    producer.flush()
    producer.close()

    catalog = IcebergCatalogResource().load()
    batch = ingest_kafka_batch(catalog, KafkaResource(), CUSTOMERS, topic, "run-cdc")
    assert batch.landed == len(disordered) and batch.quarantined == 0

    selection = [
        dg.AssetKey(["silver", "customers"]),
        dg.AssetKey(["silver", "customers_history"]),
        dg.AssetKey(["quarantine", "customers"]),  # contract rejects: same multi-asset
    ]
    job = defs.resolve_job_def("lakehouse")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, asset_selection=selection).success
        # replaying the run changes nothing
        assert job.execute_in_process(instance=instance, asset_selection=selection).success

    silver = catalog.load_table("silver.customers").scan().to_arrow().to_pylist()
    # PII is masked in silver: email hashed (compare the keyed hash), full_name tokenized
    # (the key turns it back into the name)
    masker = Masker.from_settings()
    final = {k: (v[0], masker.hash(v[1]), *v[2:]) for k, v in final.items()}
    got = {
        r["customer_id"]: (
            r["customer_id"],
            r["email"],
            masker.detokenize(r["full_name"]),
            r["country"],
            r["credit"],
            r["signup_date"],
            r["updated_at"].replace(tzinfo=None),
            r["notes"],
        )
        for r in silver
    }
    assert got == final
    history = catalog.load_table("silver.customers_history").scan().to_arrow().to_pylist()
    current = [h for h in history if h["is_current"]]
    assert sorted(h["customer_id"] for h in current) == sorted(final)
    assert all(h["valid_to"] is None for h in current)


def test_the_simulation_draws_from_exactly_the_sorted_rows():
    """The demo's simulation keeps the keys it draws from sorted as rows change instead of
    sorting every table at every step; the draws must be the ones sorting would give."""
    changes = ShopChanges(seed=11, mean_gap_s=5)
    changes.snapshot(30)
    for n in range(4_000):
        changes.step()
        if n % 500 == 0 or n == 3_999:
            rows = changes.rows
            assert changes.keys == {t: sorted(rows[t]) for t in rows}
            open_orders = {
                k for k, o in rows["orders"].items() if o["status"] in ("placed", "paid")
            }
            assert changes.open_orders == sorted(open_orders)
            items = rows["order_items"]
            assert changes.open_items == sorted(
                k for k, i in items.items() if i["order_id"] in open_orders
            )
    assert changes.open_orders and changes.open_items and len(rows["customers"]) > 30
