"""Transactions as Debezium reports them (tests/cdc_transactions.py), from a real
PostgreSQL through the Kafka-protocol broker and bronze into silver: the current state
equals the database's, the history's blocking contract holds, an as-of query returns
the database's state after each commit, and a full rebuild writes the same rows."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from lakehouse.declarations.sources import sources
from lakehouse.ingest.kafka.reader import ingest_kafka_batch
from lakehouse.quality.history import HISTORY_RULES, history_contract
from lakehouse.quality.policy import evaluate
from lakehouse.transforms.masking import Masker
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from tests.cdc_transactions import Connector, run_transactions

SOURCE = sources().cdc_source("customers")
START = datetime(2026, 11, 1, 10, 0, 0)
SELECTION = [
    dg.AssetKey(["silver", "customers"]),
    dg.AssetKey(["silver", "customers_history"]),
    dg.AssetKey(["quarantine", "customers"]),
]


def _build(defs, instance, full: bool = False) -> dict:
    """The CDC silver step (and its blocking checks); the materialization's metadata."""
    result = defs.resolve_job_def("lakehouse").execute_in_process(
        instance=instance,
        asset_selection=SELECTION,
        run_config={"ops": {"silver_customers": {"config": {"full": full}}}},
    )
    assert result.success
    failed = [c.asset_check_key.name for c in result.get_asset_check_evaluations() if not c.passed]
    assert not failed, failed
    events = {
        e.asset_key: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    for key, metadata in events.items():  # what the UI's column table shows
        undescribed = [
            c.name for c in metadata["dagster/column_schema"].schema.columns if not c.description
        ]
        assert not undescribed, (key, undescribed)
    return {k: v.value for k, v in events[SELECTION[0]].items()}


def _rows(catalog, name: str) -> list:
    rows = catalog.load_table(name).scan().to_arrow().to_pylist()
    return sorted(sorted((k, repr(v)) for k, v in r.items()) for r in rows)


def _as_silver(masker: Masker, row: dict) -> tuple:
    return (
        row["customer_id"],
        masker.hash(row["email"]),
        row["full_name"],
        row["country"],
        row["credit"],
        row["signup_date"],
        row["updated_at"],
        row["notes"],
    )


def _from_silver(masker: Masker, row: dict) -> tuple:
    return (
        row["customer_id"],
        row["email"],
        masker.detokenize(row["full_name"]),
        row["country"],
        row["credit"],
        row["signup_date"],
        row["updated_at"].replace(tzinfo=None),
        row["notes"],
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("identity", "with_schema"), [("default", True), ("full", False)])
def test_transactions_reach_silver_as_the_database_committed_them(
    lakehouse_env, make_database, defs, identity, with_schema
):
    with psycopg.connect(make_database("cdc_tx")) as conn:
        connector = Connector(conn, identity, with_schema, START)
        run_transactions(connector, START)
        final = connector.rows()
    messages = connector.messages
    # the increments split the transaction that changes one row three times
    values = [m.value for m in messages]
    split = next(i for i, v in enumerate(values) if v and b'"notes": "moved"' in v) + 1

    topic = SOURCE.resolved_topic(lakehouse_env.kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    masker = Masker.from_settings()
    modes = []
    with dg.instance_for_test() as instance:
        for n, part in enumerate((messages[:split], messages[split:])):
            producer = KafkaResource().producer()
            for message in part:
                producer.send(topic, key=message.key, value=message.value)
            producer.flush()
            producer.close()
            batch = ingest_kafka_batch(catalog, KafkaResource(), SOURCE, topic, f"run-tx-{n}")
            assert batch.landed == len(part) and batch.quarantined == 0
            modes.append(_build(defs, instance)["lakehouse/silver_mode"])
        assert modes == ["full", "incremental"]  # the first build, then on top of it
        built = {n: _rows(catalog, n) for n in ("silver.customers", "silver.customers_history")}
        assert _build(defs, instance, full=True)["lakehouse/silver_mode"] == "full"
        rebuilt = {n: _rows(catalog, n) for n in built}
    assert rebuilt == built

    current = catalog.load_table("silver.customers").scan().to_arrow().to_pylist()
    assert {r["customer_id"]: _from_silver(masker, r) for r in current} == {
        k: _as_silver(masker, r) for k, r in final.items()
    }

    history = catalog.load_table("silver.customers_history").scan().to_arrow()
    frame = history.to_pandas()
    evaluation = evaluate(history_contract(SOURCE), frame)
    broken = {r: o.index for r, o in evaluation.outcomes.items() if r in HISTORY_RULES and o.index}
    assert broken == {}
    versions = history.to_pylist()
    zero_length = [v for v in versions if v["valid_to"] == v["valid_from"]]
    # c-1's snapshot read (T1 committed before the snapshot's time), c-2 and c-6 changed
    # again in their transaction, c-3b changed after its key change, c-7 created and
    # deleted, c-3 re-created in the millisecond of its next update; c-4's delete and
    # re-insert close one version and open the next at one instant, neither zero-length
    assert Counter(v["customer_id"] for v in zero_length) == Counter(
        {"c-2": 2, "c-1": 1, "c-6": 1, "c-3b": 1, "c-7": 1, "c-3": 1}
    )

    # as of any instant after the snapshot, the history holds what the database held
    # (of two commits in one millisecond, the later one: the earlier is not visible)
    visible = dict(connector.states[1:])
    for committed, state in visible.items():
        for at in (committed, committed + timedelta(milliseconds=1)):
            at = at.replace(tzinfo=UTC)
            as_of = {
                v["customer_id"]: _from_silver(masker, v)
                for v in versions
                if v["valid_from"] <= at and (v["valid_to"] is None or at < v["valid_to"])
            }
            assert as_of == {k: _as_silver(masker, r) for k, r in state.items()}, at


def test_redelivered_transaction_changes_are_duplicates_in_any_order(make_database):
    """The same transaction's changes, shuffled and some delivered twice, give one
    history (the apply step alone: ordering is by LSN, not by arrival or clock)."""
    from lakehouse.ingest.debezium import parse_change
    from lakehouse.transforms.cdc import OrderedChange, apply_changes

    with psycopg.connect(make_database("cdc_tx_order")) as conn:
        connector = Connector(conn, "default", False, START)
        run_transactions(connector, START)
    changes = [
        OrderedChange(parse_change(m.value, SOURCE.columns), 0, i)
        for i, m in enumerate(connector.messages)
        if m.value is not None
    ]
    expected = apply_changes(changes, SOURCE.keys)
    rng = random.Random(17)
    for _ in range(5):
        shuffled = changes + rng.sample(changes, 6)
        rng.shuffle(shuffled)
        again = apply_changes(shuffled, SOURCE.keys)
        assert again.history == expected.history and again.current == expected.current
        assert again.duplicates_skipped == 6
