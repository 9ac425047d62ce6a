"""Kafka -> bronze on a real broker: bad input, replays, races, offsets out of range."""

from __future__ import annotations

import json
import os
import threading

import pytest
from kafka.admin import NewTopic

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import sources
from lakehouse.ingest.kafka.reader import OffsetsOutOfRange, ingest_kafka_batch
from lakehouse.settings import KafkaOffsetPolicy
from lakehouse.tables.commits import append_with_position, committed_position, ensure_table
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource


def _event(i: int, **overrides) -> bytes:
    event = {
        "event_id": f"e-{i}",
        "event_type": "page_view",
        "user_id": f"u-{i % 5}",
        "ts": "2026-11-01T10:00:00Z",
        **overrides,
    }
    return json.dumps(event).encode()


def _produce(settings, values: list[bytes | None]) -> None:
    producer = KafkaResource().producer(max_request_size=4 * 1024 * 1024)
    for i, value in enumerate(values):
        producer.send(source_topic(settings), key=f"k{i % 7}".encode(), value=value)
    producer.flush()
    producer.close()


def source_topic(settings) -> str:
    return sources().kafka_source("clickstream").resolved_topic(settings.kafka_topic_prefix)


def _bronze_offsets(catalog, source) -> list[tuple[int, int]]:
    rows = catalog.load_table(source.bronze_table).scan().to_arrow()
    return list(
        zip(rows["_kafka_partition"].to_pylist(), rows["_kafka_offset"].to_pylist(), strict=True)
    )


def test_bad_records_are_quarantined_with_reasons_and_counts_reconcile(lakehouse_env):
    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    good = [_event(i) for i in range(40)]
    bad = [
        b"{not json",
        b"\xff\xfe\x00 invalid utf-8",
        b"[1, 2, 3]",
        json.dumps({"event_id": "e-x", "event_type": "page_view", "ts": "t"}).encode(),
        None,  # tombstone
        json.dumps({"event_id": "\ud800", "event_type": "x", "user_id": "u", "ts": "t"}).encode(),
        b"{" + b'"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}',  # oversized
        # valid JSON that json cannot decode: nested past the recursion limit, and an
        # integer past Python's 4,300-digit limit
        b'{"event_id": "e-d", "d": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"event_id": "e-n", "n": ' + b"9" * 5000 + b"}",
    ]
    _produce(settings, good + bad)
    catalog = IcebergCatalogResource().load()

    producer = KafkaResource().producer()
    future_us = 1_700_000_000_000_000  # a producer that put microseconds in CreateTime
    producer.send(topic, key=b"k", value=_event(99), timestamp_ms=future_us)
    producer.flush()
    producer.close()
    batch = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-1")

    assert batch.records_read == 50
    assert batch.landed == 41 and batch.quarantined == 9 and batch.reconciled
    assert batch.quarantine_rules == {
        "json": 3,
        "json_object": 1,
        "required_fields": 1,
        "not_null": 1,
        "max_size": 1,
        "utf8": 2,
    }
    quarantine = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    assert {r["_rule"] for r in quarantine} == set(batch.quarantine_rules)
    assert all(r["_reason"] and r["_kafka_offset"] is not None for r in quarantine)
    missing = next(r for r in quarantine if r["_rule"] == "required_fields")
    assert "user_id" in missing["_reason"]
    reasons = {r["_reason"] for r in quarantine if r["_rule"] == "json"}
    assert "value nests too deeply to decode" in reasons
    assert any("4300 digits" in r for r in reasons), reasons
    assert len(_bronze_offsets(catalog, source)) == 41
    bronze = catalog.load_table(source.bronze_table).scan().to_arrow().to_pylist()
    assert next(r for r in bronze if r["event_id"] == "e-99")["_kafka_timestamp"] is None


def test_replay_and_resume_never_duplicate(lakehouse_env):
    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    _produce(settings, [_event(i) for i in range(100)])

    first = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-1", max_records=30)
    assert first.landed == 30
    again = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-2")  # resumes at 30
    assert again.landed == 70
    assert again.start_offsets == first.next_offsets
    nothing = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-3")
    assert nothing.landed == 0 and nothing.snapshot_id is None

    _produce(settings, [_event(i) for i in range(100, 110)])
    tail = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-4")
    assert tail.landed == 10
    offsets = _bronze_offsets(catalog, source)
    assert len(offsets) == 110 == len(set(offsets))
    table = catalog.load_table(source.bronze_table)
    assert sum(committed_position(table, topic).values()) == 110


def test_two_runs_racing_on_one_table_land_each_record_once(lakehouse_env):
    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    _produce(settings, [_event(i) for i in range(500)])
    catalog = IcebergCatalogResource().load()
    ensure_table(catalog, source.bronze_table, source.layout)
    results, errors = [], []

    def run(name: str) -> None:
        try:
            results.append(
                ingest_kafka_batch(
                    IcebergCatalogResource().load(), KafkaResource(), source, topic, name
                )
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"racer-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(r.landed for r in results) == 500
    offsets = _bronze_offsets(catalog, source)
    assert len(offsets) == 500 == len(set(offsets))


def test_committed_offsets_ahead_of_the_broker_fail_clearly_or_follow_the_policy(lakehouse_env):
    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    admin = KafkaResource().admin()
    # a fresh single-partition topic whose table claims 1,000 records were already read
    admin.delete_topics([topic])
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    _produce(settings, [_event(0), _event(1), b"{broken", _event(3), _event(4)])
    table = ensure_table(catalog, source.bronze_table, source.layout)
    empty = source.layout.arrow_schema().empty_table()
    append_with_position(table, empty, topic, {"0": 1000}, "earlier-run")
    # and quarantine as a crash between the two commits of that run left it
    quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
    crashed = {"base": {"0": 1000}, "next": {"0": 1010}}
    append_with_position(quarantine, QUARANTINE.arrow_schema().empty_table(), topic, crashed, "x")

    with pytest.raises(OffsetsOutOfRange, match=r"\[0\]: committed offset 1000 is ahead"):
        ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-fail")
    assert catalog.load_table(source.bronze_table).scan().to_arrow().num_rows == 0

    batch = ingest_kafka_batch(
        catalog, KafkaResource(), source, topic, "run-reset", policy=KafkaOffsetPolicy.EARLIEST
    )
    assert batch.offset_resets and "earliest" in batch.offset_resets[0]
    # the reset position is committed; the next run reads the recreated topic from its start
    follow_up = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-after")
    assert batch.landed + follow_up.landed == 4
    # the malformed record of the new epoch is quarantined, not taken for one already held
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    assert [(r["_kafka_offset"], r["_rule"]) for r in rejects] == [(2, "json")]


def test_tables_made_elsewhere_get_no_blind_commit_retries_and_rows_conform_by_name(
    lakehouse_env,
):
    import pyarrow as pa

    from lakehouse.tables.commits import conform

    catalog = IcebergCatalogResource().load()
    catalog.create_namespace_if_not_exists("bronze")
    layout = sources().kafka_source("clickstream").layout
    catalog.create_table("bronze.made_by_spark", schema=layout.schema)  # default: 4 retries
    table = ensure_table(catalog, "bronze.made_by_spark", layout)
    assert table.properties["commit.retry.num-retries"] == "0"

    schema = pa.schema([("a", pa.string()), ("b", pa.int64()), ("c", pa.string())])
    rows = conform(pa.table({"b": [1], "a": ["x"]}), schema)
    assert rows.to_pylist() == [{"a": "x", "b": 1, "c": None}]
    with pytest.raises(ValueError, match=r"\['zz'\] are not in the table schema"):
        conform(pa.table({"zz": [1]}), schema)


def test_a_transactional_topic_is_read_past_its_commit_markers(lakehouse_env):
    """Transaction markers occupy offsets but are never returned as records: the committed
    position must move past them, or the topic would look unread forever."""
    from kafka import KafkaProducer

    from lakehouse.defs.bronze.sensors import kafka_highwater

    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    admin = KafkaResource().admin()
    admin.delete_topics([topic])
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=settings.resolved_kafka_bootstrap,
        transactional_id=f"tx-{topic}",
        enable_idempotence=True,
    )
    producer.init_transactions()
    for batch in ([0, 1, 2], [3]):
        producer.begin_transaction()
        for i in batch:
            producer.send(topic, key=b"k", value=_event(i))
        producer.commit_transaction()
    producer.close()

    catalog = IcebergCatalogResource().load()
    batch = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-tx")
    assert batch.landed == 4
    highwater = kafka_highwater(KafkaResource(), topic, batch.next_offsets)
    assert batch.next_offsets == highwater == {0: 6}  # 4 records + 2 commit markers
    # the marker at offset 3 leaves a gap: each row keeps its own record's offset
    assert sorted(_bronze_offsets(catalog, source)) == [(0, 0), (0, 1), (0, 2), (0, 4)]


def test_files_written_while_polling_are_committed_once_and_a_lost_commit_leaves_none(
    lakehouse_env, monkeypatch
):
    """Bronze data files are written during the poll loop and committed with the offsets.
    Another writer commits in the middle of the read: the first attempt loses, its files
    are deleted (no snapshot ever referenced them), the retry re-reads and lands each
    record once; DuckDB reads the committed files back."""
    import duckdb

    from lakehouse.dbt.duckdb_plugin import load_iceberg_extension
    from lakehouse.ingest.kafka.decode import BronzeBuilder

    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    _produce(settings, [_event(i) for i in range(300)] + [b"{broken"])
    catalog = IcebergCatalogResource().load()
    ensure_table(catalog, source.bronze_table, source.layout)
    chunks: list[int] = []
    real_add = BronzeBuilder.add

    def add_then_another_writer_commits(self, records):
        real_add(self, records)
        chunks.append(len(records))
        if len(chunks) == 2:  # first attempt, a file already written, partitions unread
            other = IcebergCatalogResource().load().load_table(source.bronze_table)
            empty = source.layout.arrow_schema().empty_table()
            append_with_position(other, empty, "another.topic", {"0": 1}, "another-run")

    monkeypatch.setattr(BronzeBuilder, "add", add_then_another_writer_commits)
    batch = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-1", data_file_bytes=1)

    assert sum(chunks) > 301  # the first attempt's records were read again
    assert batch.records_read == 301 and batch.landed == 300 and batch.reconciled
    offsets = _bronze_offsets(catalog, source)
    assert len(offsets) == 300 == len(set(offsets))
    table = catalog.load_table(source.bronze_table)
    assert table.current_snapshot().summary["lakehouse.run-id"] == "run-1"
    referenced = {_local(t.file.file_path) for t in table.scan().plan_files()}
    assert len(referenced) >= 3  # one file per polled chunk at this file size
    on_disk = {
        os.path.join(root, name)
        for root, _, names in os.walk(_local(table.location()))
        for name in names
        if name.endswith(".parquet")
    }
    assert on_disk == referenced  # the losing attempt's files are gone
    conn = duckdb.connect()
    load_iceberg_extension(conn)
    duck = conn.execute(
        f"select count(*), count(distinct _kafka_partition || ':' || _kafka_offset) "
        f"from iceberg_scan('{table.metadata_location}')"
    ).fetchone()
    assert duck == (300, 300)


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def test_a_chunk_that_fails_to_convert_fails_the_batch_and_leaves_no_files(
    lakehouse_env, monkeypatch
):
    """Chunks are converted in a worker thread while polling goes on: its error must
    surface in the run, before any commit, and the data files written for the chunks
    before it are deleted. The next run lands everything once."""
    from lakehouse.ingest.kafka.decode import BronzeBuilder
    from lakehouse.tables.data_files import BackgroundDataFiles

    settings = lakehouse_env
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(settings.kafka_topic_prefix)
    _produce(settings, [_event(i) for i in range(300)] + [b"{broken"])
    catalog = IcebergCatalogResource().load()
    real_add = BronzeBuilder.add
    real_write = BackgroundDataFiles._write
    chunks: list[int] = []
    written: list[str] = []

    def write_and_record(table, batches):
        files = real_write(table, batches)
        written.extend(f.file_path for f in files)
        return files

    monkeypatch.setattr(BackgroundDataFiles, "_write", staticmethod(write_and_record))

    def fail_on_the_last_chunk(self, records):
        chunks.append(len(records))
        if sum(chunks) == 301:
            raise RuntimeError("conversion failed")
        real_add(self, records)

    monkeypatch.setattr(BronzeBuilder, "add", fail_on_the_last_chunk)
    with pytest.raises(RuntimeError, match="conversion failed"):
        ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-1", data_file_bytes=1)
    assert len(chunks) > 1 and written, chunks  # files were written for the chunks before
    bronze = catalog.load_table(source.bronze_table)
    assert bronze.current_snapshot() is None
    quarantine = catalog.load_table(source.quarantine_table)
    assert quarantine.current_snapshot() is None
    on_disk = [
        name
        for _, _, names in os.walk(_local(bronze.location()))
        for name in names
        if name.endswith(".parquet")
    ]
    assert on_disk == []

    monkeypatch.setattr(BronzeBuilder, "add", real_add)
    batch = ingest_kafka_batch(catalog, KafkaResource(), source, topic, "run-2")
    assert batch.records_read == 301 and batch.landed == 300 and batch.reconciled
    offsets = _bronze_offsets(catalog, source)
    assert len(offsets) == 300 == len(set(offsets))
