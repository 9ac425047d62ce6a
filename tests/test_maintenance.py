"""Snapshot expiry keeps the committed source positions: ingest, expire, ingest again,
and every record is in bronze (or quarantine) exactly once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg

from lakehouse.ingest.kafka_events import ingest_kafka_batch, read_committed_offsets
from lakehouse.ingest.landing_files import ingest_files, ingested_files, list_new_files
from lakehouse.maintenance import iceberg_maintenance_job
from lakehouse.sources import sources
from lakehouse.tables.commits import append_with_position, committed_position, ensure_table
from lakehouse.tables.maintenance import expire_snapshots, merged_positions
from lakehouse.tables.schemas import QUARANTINE
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource

CLICKSTREAM = sources().kafka_source("clickstream")
MARKETING_SPEND = sources().landing_source("marketing_spend")
HEADER = "spend_date,channel,campaign,spend,currency\n"


def _produce(topic: str, first: int, count: int) -> None:
    producer = KafkaResource().producer()
    for i in range(first, first + count):
        event = {"event_id": f"e-{i}", "event_type": "view", "user_id": "u", "ts": "2026-11-01"}
        value = json.dumps(event).encode() if i % 10 else b"{broken"
        producer.send(topic, key=b"k%d" % (i % 7), value=value)
    producer.flush()
    producer.close()


def _soon() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=1)


def test_kafka_positions_survive_snapshot_expiry(lakehouse_env):
    settings = lakehouse_env
    topic = CLICKSTREAM.resolved_topic(settings.kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    _produce(topic, 0, 300)
    while ingest_kafka_batch(
        catalog, KafkaResource(), CLICKSTREAM, topic, "r", max_records=40
    ).records_read:
        pass
    before = read_committed_offsets(catalog, CLICKSTREAM, topic)
    assert sum(before.values()) == 300

    for identifier in (CLICKSTREAM.bronze_table, CLICKSTREAM.quarantine_table):
        result = expire_snapshots(catalog.load_table(identifier), _soon(), keep_last=1)
        assert result.expired >= 5 and result.kept <= 2, result
    assert read_committed_offsets(catalog, CLICKSTREAM, topic) == before

    # nothing is read twice, and new records after the expiry land once
    replay = ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, "r")
    assert replay.records_read == 0
    _produce(topic, 300, 100)
    assert ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, "r").records_read == 100
    bronze = catalog.load_table(CLICKSTREAM.bronze_table).scan().to_arrow()
    quarantine = catalog.load_table(CLICKSTREAM.quarantine_table).scan().to_arrow()
    ids = bronze["event_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 360
    assert set(ids) == {f"e-{i}" for i in range(400) if i % 10}
    assert quarantine.num_rows == 40


def test_landing_file_positions_survive_snapshot_expiry(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    bucket = settings.landing_bucket
    catalog = IcebergCatalogResource().load()

    def put(n: int) -> None:
        body = HEADER + f"2026-11-01,email,c{n},1.50,EUR\n2026-11-01,email,c{n}-bad,x,EUR\n"
        s3.put_object(Bucket=bucket, Key=f"marketing_spend/f{n:02d}.csv", Body=body)

    def ingest_one_by_one() -> None:
        while keys := list_new_files(
            s3, bucket, MARKETING_SPEND, ingested_files(catalog, MARKETING_SPEND), 1
        ):
            ingest_files(catalog, s3, bucket, MARKETING_SPEND, keys, "r")

    for n in range(6):
        put(n)
    ingest_one_by_one()
    # each commit carries only its own file: without the checkpoint, expiry would
    # forget f00..f04 and they would be ingested again
    bronze_table = catalog.load_table(MARKETING_SPEND.bronze_table)
    assert len(committed_position(bronze_table, MARKETING_SPEND.name)) == 1
    for identifier in (MARKETING_SPEND.bronze_table, MARKETING_SPEND.quarantine_table):
        result = expire_snapshots(catalog.load_table(identifier), _soon(), keep_last=1)
        assert result.expired >= 5, result
    assert len(ingested_files(catalog, MARKETING_SPEND)) == 6
    assert (
        list_new_files(s3, bucket, MARKETING_SPEND, ingested_files(catalog, MARKETING_SPEND), 9)
        == []
    )

    put(6)
    ingest_one_by_one()
    bronze = catalog.load_table(MARKETING_SPEND.bronze_table).scan().to_arrow()
    quarantine = catalog.load_table(MARKETING_SPEND.quarantine_table).scan().to_arrow()
    assert sorted(bronze["campaign"].to_pylist()) == [f"c{n}" for n in range(7)]
    assert sorted(quarantine["_row"].to_pylist()) == [3] * 7


def test_checkpoint_merges_positions_and_is_not_repeated(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "quarantine.maintenance_probe", QUARANTINE)
    empty = QUARANTINE.arrow_schema().empty_table()
    append_with_position(table, empty, "files", ["a@1"], "r")
    append_with_position(table, empty, "files", ["b@2"], "r")
    append_with_position(table, empty, "topic", {"0": 5}, "r")
    append_with_position(table, empty, "topic", {"0": 9}, "r")
    assert merged_positions(table) == {
        "lakehouse.position.files": json.dumps(["a@1", "b@2"]),
        "lakehouse.position.topic": json.dumps({"0": 9}),
    }
    first = expire_snapshots(table, _soon(), keep_last=1)
    second = expire_snapshots(catalog.load_table("quarantine.maintenance_probe"), _soon(), 1)
    assert first.checkpoint_snapshot_id == second.checkpoint_snapshot_id  # no new commit
    assert second.kept == 1
    table = catalog.load_table("quarantine.maintenance_probe")
    assert committed_position(table, "files") == ["a@1", "b@2"]
    assert committed_position(table, "topic") == {"0": 9}


def test_maintenance_job_runs_over_the_catalog(lakehouse_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOT_RETENTION_HOURS", "0")
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOTS_KEEP_LAST", "1")
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.maintenance_probe", QUARANTINE)
    for n in range(4):
        append_with_position(table, QUARANTINE.arrow_schema().empty_table(), "t", {"0": n}, "r")
    result = iceberg_maintenance_job.execute_in_process(
        resources={"iceberg": IcebergCatalogResource()}, instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    # the newest snapshot already holds the whole position: no checkpoint, 3 expired
    assert result.output_for_node("expire_table_snapshots") == 3
    table = catalog.load_table("bronze.maintenance_probe")
    assert committed_position(table, "t") == {"0": 3}
    assert len(table.metadata.snapshots) == 1
