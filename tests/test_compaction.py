"""Compaction rewrites small files as few, adds no row, moves no committed position and
makes no incremental reader read anything again; ingestion racing it lands every record
once. Real tables in a real SQL catalog, a real Tansu broker for the race."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table.snapshots import Operation

from lakehouse.declarations.sources import sources
from lakehouse.defs.maintenance.jobs import iceberg_maintenance_job
from lakehouse.ingest.kafka.reader import ingest_kafka_batch, read_committed_offsets
from lakehouse.tables.commits import (
    append_with_position,
    committed_position,
    ensure_table,
    last_write,
)
from lakehouse.tables.compaction import (
    ARROW,
    CompactionPolicy,
    FileStats,
    choose_engine,
    compact_table,
    plan_compaction,
)
from lakehouse.tables.increments import SHAPE_KEY, plan_build
from lakehouse.tables.rebuilds import BUILT_FROM_KEY
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.spark import SparkResource

CLICKSTREAM = sources().kafka_source("clickstream")
DAYS = [datetime(2026, 11, d, 12, tzinfo=UTC) for d in (1, 2, 3)]
POLICY = CompactionPolicy()


def _batch(n: int) -> pa.Table:
    """One ingestion batch: one event, on one of three ingestion days (partitions)."""
    at = DAYS[n % 3] + timedelta(seconds=n)
    row = {
        "event_id": f"e-{n}",
        "event_type": "view",
        "user_id": f"u{n % 7}",
        "event_ts": at.isoformat(),
        "payload": json.dumps({"n": n}),
        "_source": "clickstream",
        "_kafka_topic": "t",
        "_kafka_partition": 0,
        "_kafka_offset": n,
        "_kafka_timestamp": at,
        "_ingested_at": at,
        "_run_id": f"r{n}",
    }
    return pa.Table.from_pylist([row], schema=CLICKSTREAM.layout.arrow_schema())


def _batches(catalog, identifier: str, count: int = 200):
    table = ensure_table(catalog, identifier, CLICKSTREAM.layout)
    for n in range(count):
        append_with_position(table, _batch(n), "t", {"0": n + 1}, f"r{n}")
    return table


def _sorted(rows: pa.Table) -> pa.Table:
    return rows.sort_by([("_kafka_offset", "ascending")])


def test_two_hundred_one_batch_files_become_one_per_partition(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    table = _batches(catalog, "bronze.compaction_probe")
    before_rows = _sorted(table.scan().to_arrow())
    before_snapshot = table.current_snapshot()
    assert FileStats.of(table).files == 200

    plan = plan_compaction(table, POLICY)
    assert choose_engine(plan, POLICY) == ARROW
    assert {g.partition for g in plan.groups} == {
        "ingested_at_day=2026-11-01",
        "ingested_at_day=2026-11-02",
        "ingested_at_day=2026-11-03",
    }
    assert plan.pack_manifests  # 200 one-file manifests
    result = compact_table(table, POLICY, "maintenance-run", plan)

    table = catalog.load_table("bronze.compaction_probe")
    assert result.before.files == 200 and result.after.files == 3
    assert result.files_rewritten == 200 and result.rows_rewritten == 200
    # one-row files are mostly Parquet footer: 200 of them hold ~50 times the bytes of 3
    assert result.after.bytes * 20 < result.before.bytes
    assert result.after.mean_bytes > result.before.mean_bytes
    assert result.manifests_before == 200 and result.manifests_after < 10
    files = table.inspect.files()
    assert sorted(Counter(str(p) for p in files["partition"].to_pylist()).values()) == [1, 1, 1]
    # the same rows, each once
    after_rows = _sorted(table.scan().to_arrow())
    assert after_rows.equals(before_rows)
    # a replace, adding no row: positions kept, incremental readers find nothing new
    snapshot = table.current_snapshot()
    assert snapshot.summary.operation == Operation.REPLACE
    assert snapshot.summary["total-records"] == "200"
    assert committed_position(table, "t") == {"0": 200}
    assert last_write(table).snapshot_id == before_snapshot.snapshot_id
    increment = table.incremental_append_scan(
        from_snapshot_id_exclusive=before_snapshot.snapshot_id,
        to_snapshot_id_inclusive=snapshot.snapshot_id,
    ).to_arrow()
    assert increment.num_rows == 0
    # nothing left to do: a second compaction commits nothing
    assert compact_table(table, POLICY, "again").snapshot_id is None
    assert catalog.load_table("bronze.compaction_probe").current_snapshot() == snapshot


def test_a_partition_with_few_small_files_is_left_alone(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.few_files_probe", CLICKSTREAM.layout)
    for n in (0, 3, 6, 9, 1, 4):  # day 1 gets four files, day 2 two
        append_with_position(table, _batch(n), "t", {"0": n + 1}, f"r{n}")
    plan = plan_compaction(table, CompactionPolicy(min_input_files=3, min_manifests=100))
    assert [g.partition for g in plan.groups] == ["ingested_at_day=2026-11-01"]
    assert not plan.pack_manifests
    result = compact_table(table, CompactionPolicy(min_input_files=3), "r", plan)
    assert (result.before.files, result.after.files) == (6, 3)
    assert result.partitions == 1


def test_a_silver_build_after_compaction_stays_incremental(lakehouse_env):
    """Silver records in each build which bronze snapshot it read: a compaction on
    top of silver or bronze must not make the next build rebuild or re-read."""
    catalog = IcebergCatalogResource().load()
    bronze = _batches(catalog, "bronze.compaction_source", 15)
    silver = ensure_table(catalog, "silver.compaction_probe", CLICKSTREAM.layout)
    shape = {"contract": "c1"}
    properties = {
        BUILT_FROM_KEY: str(bronze.current_snapshot().snapshot_id),
        SHAPE_KEY: json.dumps(shape),
    }
    for n in range(10):
        append_with_position(silver, _batch(n), "unused", {"0": n}, "r")
    with silver.transaction() as tx:
        tx.append(_batch(99), snapshot_properties=properties)

    compact_table(silver, POLICY, "m")
    compact_table(bronze, POLICY, "m")
    assert silver.current_snapshot().summary.operation == Operation.REPLACE
    plan = plan_build(silver, bronze, shape)
    assert (plan.mode, plan.appends) == ("incremental", ())  # the replace is no append

    append_with_position(bronze, _batch(200), "t", {"0": 201}, "r200")
    plan = plan_build(silver, bronze, shape)
    assert plan.mode == "incremental" and len(plan.appends) == 1  # the new batch only


def test_kafka_ingestion_racing_compaction_lands_every_record_once(lakehouse_env):
    """Ingestion commits batch after batch while compaction runs again and again: each
    loses some races and retries; every record lands once, offsets are exact."""
    settings = lakehouse_env
    topic = CLICKSTREAM.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    total = 400
    for i in range(total):
        event = {"event_id": f"e-{i}", "event_type": "view", "user_id": "u", "ts": "2026-11-01"}
        producer.send(topic, key=b"k%d" % (i % 5), value=json.dumps(event).encode())
    producer.flush()
    producer.close()
    catalog = IcebergCatalogResource().load()
    ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, "first", max_records=5)
    done = threading.Event()
    compactions: list = []
    errors: list[BaseException] = []

    def compact() -> None:
        own = IcebergCatalogResource().load()
        policy = CompactionPolicy(min_input_files=3)
        try:
            while not done.is_set():
                table = own.load_table(CLICKSTREAM.bronze_table)
                result = compact_table(table, policy, "compactor")
                if result.snapshot_id:
                    compactions.append(result)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    worker = threading.Thread(target=compact)
    worker.start()
    try:
        own = IcebergCatalogResource().load()
        while ingest_kafka_batch(
            own, KafkaResource(), CLICKSTREAM, topic, "race", max_records=5
        ).records_read:
            pass
    finally:
        done.set()
        worker.join()
    assert not errors, errors
    assert len(compactions) >= 2, "compaction never committed during the race"

    table = catalog.load_table(CLICKSTREAM.bronze_table)
    compact_table(table, CompactionPolicy(min_input_files=2), "final")
    bronze = catalog.load_table(CLICKSTREAM.bronze_table).scan().to_arrow()
    coords = list(
        zip(
            bronze["_kafka_partition"].to_pylist(), bronze["_kafka_offset"].to_pylist(), strict=True
        )
    )
    assert len(coords) == len(set(coords)) == total
    assert sorted(pc.unique(bronze["event_id"]).to_pylist()) == sorted(
        f"e-{i}" for i in range(total)
    )
    assert sum(read_committed_offsets(catalog, CLICKSTREAM, topic).values()) == total
    operations = Counter(
        s.summary.operation for s in catalog.load_table(CLICKSTREAM.bronze_table).snapshots()
    )
    assert operations[Operation.REPLACE] >= 2 and operations[Operation.APPEND] >= total // 5


def test_maintenance_job_compacts_and_reports_each_table(lakehouse_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOT_RETENTION_HOURS", "0")
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOTS_KEEP_LAST", "1")
    monkeypatch.setenv("LAKEHOUSE_ORPHAN_FILE_MIN_AGE_HOURS", "0")
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.job_compaction_probe", CLICKSTREAM.layout)
    for n in range(12):
        append_with_position(table, _batch(n * 3), "t", {"0": n + 1}, f"r{n}")
    rows = _sorted(table.scan().to_arrow())
    result = iceberg_maintenance_job.execute_in_process(
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (output,) = [
        e
        for e in result.all_node_events
        if e.step_key == "compact_tables" and e.is_successful_output
    ]
    metadata = output.event_specific_data.metadata
    report = metadata["tables"].value["bronze.job_compaction_probe"]
    assert report["engine"] == "arrow"
    assert report["before"]["files"] == 12 and report["after"]["files"] == 1
    assert report["after"]["mean_file_bytes"] > report["before"]["mean_file_bytes"]
    assert metadata["files rewritten"].value == 12
    table = catalog.load_table("bronze.job_compaction_probe")
    # expiry then removed the snapshots of the small files, orphan removal the files
    assert len(table.inspect.files()) == 1
    assert _sorted(table.scan().to_arrow()).equals(rows)
    assert committed_position(table, "t") == {"0": 12}
