"""PII masking: the keyed hash, reversible tokens and redaction (pure), and a scan of every
silver and gold Iceberg table for the raw PII values the demo generated (none may appear),
including values in columns the sources start sending that sources.yml does not classify."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from cryptography.exceptions import InvalidTag

from lakehouse.declarations.pii import PiiPolicy
from lakehouse.declarations.sources import load_sources, sources
from lakehouse.demo.cdc import envelope, generate_shop_changes
from lakehouse.demo.clickstream import generate
from lakehouse.demo.load import publish_cdc, publish_clickstream, publish_landing_files
from lakehouse.ingest.kafka.decode import bronze_row
from lakehouse.ingest.records import RecordRejected
from lakehouse.settings import LakehouseSettings
from lakehouse.spark.jars import build_spark_jars
from lakehouse.tables.commits import ensure_table
from lakehouse.transforms.masking import (
    DEV_KEY,
    REDACTED,
    Masker,
    PiiKeyMissing,
    pii_key,
)
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource


def test_hash_is_keyed_and_deterministic_tokens_reverse_only_with_the_key():
    masker, other = Masker(b"key-one"), Masker(b"key-two")
    assert masker.hash("u-00001") == masker.hash("u-00001")  # still a join / dedup key
    assert masker.hash("u-00001") != other.hash("u-00001")  # not a plain, guessable digest
    assert len(masker.hash("u-00001")) == 64
    token = masker.tokenize("Ada Lovelace")
    assert token == masker.tokenize("Ada Lovelace") and "Ada" not in token
    assert masker.detokenize(token) == "Ada Lovelace"
    with pytest.raises(InvalidTag):
        other.detokenize(token)
    assert masker.mask("x", PiiPolicy.REDACT) == REDACTED
    assert masker.mask(None, PiiPolicy.HASH) is None
    masked = json.loads(
        masker.mask_json_text('{"user_id": "u-1", "page": "/"}', {"user_id": "hash"})
    )
    assert masked == {"user_id": masker.hash("u-1"), "page": "/"}
    assert masker.mask_json_text("{not json", {"user_id": "hash"}) == REDACTED


def test_the_key_comes_from_the_environment_and_prod_refuses_to_run_without_it(monkeypatch):
    monkeypatch.delenv("LAKEHOUSE_PII_KEY", raising=False)
    monkeypatch.setenv("LAKEHOUSE_ENV", "prod")
    with pytest.raises(PiiKeyMissing, match="LAKEHOUSE_PII_KEY"):
        pii_key(LakehouseSettings())
    monkeypatch.setenv("LAKEHOUSE_PII_KEY", "s3cr3t")
    assert pii_key(LakehouseSettings()) == b"s3cr3t"
    assert "s3cr3t" not in repr(LakehouseSettings())  # a SecretStr: never in logs
    monkeypatch.delenv("LAKEHOUSE_PII_KEY")
    monkeypatch.setenv("LAKEHOUSE_ENV", "local")
    assert pii_key(LakehouseSettings()) == DEV_KEY.encode() and b"dev" in DEV_KEY.encode()


def test_pii_accepts_a_list_meaning_hash_or_a_policy_per_column(tmp_path):
    path = tmp_path / "sources.yml"
    path.write_text(
        "kafka:\n"
        "  - {name: a, topic: t, columns: {x: x}, pii: [x]}\n"
        "  - {name: b, topic: u, columns: {x: x, y: y}, pii: {x: tokenize, y: redact}}\n"
    )
    loaded = load_sources(path)
    assert loaded.kafka[0].pii == {"x": PiiPolicy.HASH}
    assert loaded.kafka[1].pii == {"x": PiiPolicy.TOKENIZE, "y": PiiPolicy.REDACT}
    path.write_text("kafka:\n  - {name: a, topic: t, columns: {x: x}, pii: {x: rot13}}\n")
    with pytest.raises(ValueError, match="pii"):
        load_sources(path)


def _raw_pii_values() -> set[str]:
    users = set()
    for message in generate(scale=1):
        try:
            event = json.loads(message.value)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("user_id"):
            users.add(event["user_id"])
    people = set()
    messages, _ = generate_shop_changes(snapshot=60, steps=2_500, mean_gap_s=90)  # as published
    for message in messages:
        if message.value is None:
            continue
        change = json.loads(message.value)
        change = change.get("payload", change)
        for image in (change.get("before"), change.get("after")):
            for column in ("email", "full_name"):
                if image and image.get(column):
                    people.add(image[column])
    assert len(users) >= 50 and len(people) >= 80
    return users | people


def _publish_evolved(settings) -> set[str]:
    """Columns the sources start sending, undeclared, holding PII: a page view with the
    visitor's e-mail, a customer with a phone number. Their raw values are returned."""
    declared = load_sources()
    emails = [f"evolved{n}@example.org" for n in range(3)]
    events = [
        {
            "event_id": f"ev-pii-{n}",
            "event_type": "page_view",
            "user_id": "u-00001",
            "session_id": "s-u-00001-1",
            "page": "/",
            "ts": "2026-11-02T12:00:00Z",
            "contact_email": email,
        }
        for n, email in enumerate(emails)
    ]
    phone = "+49 170 5550123"
    customer = {
        "customer_id": "c-99999",
        "email": "evolved-customer@example.org",
        "full_name": "Evolved Customer",
        "country": "DE",
        "credit": Decimal("1.00"),
        "signup_date": date(2026, 11, 1),
        "updated_at": datetime(2026, 11, 2, 12, 0),
        "notes": None,
        "phone": phone,
    }
    change = envelope("c", None, customer, 10**12, 1_793_000_000_000, 9, False)
    producer = KafkaResource().producer()
    try:
        topic = declared.kafka_source("clickstream").resolved_topic(settings.kafka_topic_prefix)
        for event in events:
            producer.send(topic, value=json.dumps(event).encode())
        topic = declared.cdc_source("customers").resolved_topic(settings.kafka_topic_prefix)
        producer.send(topic, key=b"c-99999", value=json.dumps(change).encode())
        producer.flush()
    finally:
        producer.close()
    return {*emails, phone, customer["email"], customer["full_name"]}


@pytest.mark.timeout(900)
def test_no_raw_pii_value_appears_in_any_silver_or_gold_table(lakehouse_env, defs):
    assert publish_clickstream(lakehouse_env) and publish_cdc(lakehouse_env)
    assert publish_landing_files(lakehouse_env)
    evolved = _publish_evolved(lakehouse_env)  # new, unclassified columns carrying PII
    with dg.instance_for_test() as instance:  # the whole graph, as the demo runs it
        result = defs.resolve_job_def("lakehouse").execute_in_process(instance=instance)
        assert result.success
    withheld = {
        e.asset_key.path[-1]: e.metadata["unclassified_columns"].value
        for e in result.get_asset_check_evaluations()
        if e.check_name == "new_columns_classified" and not e.passed
    }
    assert withheld == {"page_views": ["contact_email"], "customers": ["phone"]}

    catalog = IcebergCatalogResource().load()
    tables = [".".join(t) for ns in ("silver", "gold") for t in catalog.list_tables(ns)]
    assert {"silver.page_views", "silver.customers", "silver.customers_history"} <= set(tables)
    assert "gold.daily_page_views" in tables
    assert catalog.load_table("gold.daily_page_views").scan().to_arrow().num_rows
    raw = _raw_pii_values() | evolved
    assert catalog.load_table("silver.customers").schema().find_field("phone")  # evolved
    for name in tables:
        arrow = catalog.load_table(name).scan().to_arrow()
        leaked = _leaked(arrow, raw)
        assert not leaked, f"{name} holds raw PII: {leaked[:5]}"

    # masked, yet usable: tokens turn back into names with the key, hashes still join
    masker = Masker.from_settings()
    customers = catalog.load_table("silver.customers").scan().to_arrow().to_pylist()
    names = {masker.detokenize(r["full_name"]) for r in customers}
    assert names and names <= raw
    emails = {u for u in raw if "@" in u}
    assert {r["email"] for r in customers} <= {masker.hash(e) for e in emails}
    views = catalog.load_table("silver.page_views").scan().to_arrow()
    users = {u for u in raw if u.startswith("u-")}
    assert set(views["user_id"].to_pylist()) <= {masker.hash(u) for u in users}


# ------------------------------------------------------------ the Spark job's tables


@pytest.fixture(scope="session")
def spark_jars(tmp_path_factory) -> Path:
    jars = tmp_path_factory.mktemp("pii-spark-jars")
    build_spark_jars(LakehouseSettings(state_dir=jars.parent / "unused", spark_jars_dir=jars))
    return jars


def _changelog_ingested_on_the_first_demo_day(catalog) -> int:
    """The demo's Debezium changes (as published) in bronze, ingested on 2026-11-01.

    The Spark merge reads the changes ingested on its partitions' days; the bronze
    sensor would stamp today, outside the daily partitions, hence the backdated day.
    """
    messages, _ = generate_shop_changes(snapshot=60, steps=2_500, mean_gap_s=90)
    ingested = datetime(2026, 11, 1, 12, tzinfo=UTC)
    written = 0
    for source in sources().cdc:
        rows = []
        for offset, message in enumerate(m for m in messages if m.table == source.name):
            try:
                row = bronze_row(source, message)
            except RecordRejected:
                continue
            rows.append(
                {
                    **row,
                    "_source": source.name,
                    "_kafka_topic": source.topic,
                    "_kafka_partition": 0,
                    "_kafka_offset": offset,
                    "_kafka_timestamp": ingested,
                    "_ingested_at": ingested,
                    "_run_id": "test-pii",
                }
            )
        table = ensure_table(catalog, source.bronze_table, source.layout)
        table.append(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
        written += len(rows)
    return written


@pytest.mark.timeout(900)
def test_no_raw_pii_value_appears_in_the_spark_jobs_tables(
    lakehouse_env, defs, spark_jars, monkeypatch
):
    """The Spark jobs (one local Spark session) over the demo: sessions and the CDC silver
    tables built by the Spark engine are masked, as the Arrow engine masks them."""
    monkeypatch.setenv("LAKEHOUSE_SPARK_JARS_DIR", str(spark_jars))
    assert publish_clickstream(lakehouse_env)
    catalog = IcebergCatalogResource().load()
    assert _changelog_ingested_on_the_first_demo_day(catalog) > 1_000
    views = [["bronze", "clickstream"], ["silver", "page_views"], ["quarantine", "page_views"]]
    with dg.instance_for_test() as instance:
        lakehouse = defs.resolve_job_def("lakehouse")
        selection = [dg.AssetKey(k) for k in (*views, ["quarantine", "clickstream"])]
        assert lakehouse.execute_in_process(instance=instance, asset_selection=selection).success
        spark = defs.resolve_job_def("spark").execute_in_process(
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-11-01",
                "dagster/asset_partition_range_end": "2026-11-03",
            },
        )
        assert spark.success
        cdc = defs.resolve_job_def("cdc_on_spark").execute_in_process(instance=instance)
        assert cdc.success
    written = {e.asset_key.to_user_string() for e in spark.get_asset_materialization_events()}
    assert "silver/sessions" in written
    merged = [f"silver.{s.name}" for s in sources().cdc]
    engines = {
        e.asset_key.to_user_string(): e.materialization.metadata["lakehouse/engine"].value
        for e in cdc.get_asset_materialization_events()
        if e.asset_key.to_user_string() in {m.replace(".", "/") for m in merged}
    }
    assert set(engines.values()) == {"spark"} and len(engines) == len(merged)

    raw = _raw_pii_values()
    for name in ("silver.sessions", *merged):
        arrow = catalog.load_table(name).scan().to_arrow()
        assert arrow.num_rows, f"{name} is empty: the scan would prove nothing"
        leaked = _leaked(arrow, raw)
        assert not leaked, f"{name} holds raw PII: {leaked[:5]}"

    # masked by Spark as by pyiceberg: the same tokens and hashes, reversible with the key
    masker = Masker.from_settings()
    customers = catalog.load_table("silver.customers").scan().to_arrow().to_pylist()
    assert {masker.detokenize(r["full_name"]) for r in customers} <= raw
    assert {r["email"] for r in customers} <= {masker.hash(e) for e in raw if "@" in e}
    sessions = catalog.load_table("silver.sessions").scan().to_arrow()
    assert set(sessions["user_id"].to_pylist()) <= {
        masker.hash(u) for u in raw if u.startswith("u-")
    }


def _leaked(arrow: pa.Table, raw: set[str]) -> list[str]:
    """The raw values found anywhere in the table's text columns."""
    text = "\n".join(
        str(v)
        for column in arrow.column_names
        if str(arrow.schema.field(column).type) in ("string", "large_string")
        for v in arrow[column].to_pylist()
        if v is not None
    )
    return sorted(v for v in raw if v in text)
