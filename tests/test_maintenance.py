"""Snapshot expiry keeps the committed source positions: ingest, expire, ingest again,
and every record is in bronze (or quarantine) exactly once."""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import dagster as dg
import pyarrow as pa
import pytest

from lakehouse.declarations.layouts import MAX_SNAPSHOT_AGE_MS, MIN_SNAPSHOTS_TO_KEEP, QUARANTINE
from lakehouse.declarations.sources import sources
from lakehouse.defs.maintenance.jobs import iceberg_maintenance_job, iceberg_snapshot_expiry_job
from lakehouse.ingest.kafka.reader import ingest_kafka_batch, read_committed_offsets
from lakehouse.ingest.landing.reader import ingest_files, ingested_files, list_new_files
from lakehouse.tables.commits import (
    _with_properties,
    append_files_with_position,
    append_with_position,
    committed_position,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.data_files import write_data_files
from lakehouse.tables.maintenance import (
    Retention,
    expire_snapshots,
    merged_positions,
    referenced_files,
    remove_orphan_files,
)
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource
from resources.spark import SparkResource

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


def _four_position_commits(catalog, identifier: str, layout) -> None:
    """A table with four snapshots, each an empty append committing position {"0": n}."""
    table = ensure_table(catalog, identifier, layout)
    for n in range(4):
        append_with_position(table, layout.arrow_schema().empty_table(), "t", {"0": n}, "r")


def test_maintenance_job_runs_over_the_catalog(lakehouse_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOT_RETENTION_HOURS", "0")
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOTS_KEEP_LAST", "1")
    catalog = IcebergCatalogResource().load()
    _four_position_commits(catalog, "bronze.maintenance_probe", QUARANTINE)
    result = iceberg_maintenance_job.execute_in_process(
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    # the newest snapshot already holds the whole position: no checkpoint, 3 expired
    assert result.output_for_node("expire_table_snapshots") == 3
    table = catalog.load_table("bronze.maintenance_probe")
    assert committed_position(table, "t") == {"0": 3}
    assert len(table.metadata.snapshots) == 1


@pytest.mark.parametrize(
    "job", [iceberg_maintenance_job, iceberg_snapshot_expiry_job], ids=["daily", "hourly"]
)
def test_a_tables_own_retention_overrides_the_default(lakehouse_env, monkeypatch, job):
    """A table that sets Iceberg's history.expire.* properties (a source's
    snapshot_retention_hours sets the first) is expired by them; the others by the
    settings' defaults; the step's metadata names the retention each table got."""
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOT_RETENTION_HOURS", "168")
    monkeypatch.setenv("LAKEHOUSE_SNAPSHOTS_KEEP_LAST", "1")
    catalog = IcebergCatalogResource().load()
    busy = QUARANTINE.with_properties({MAX_SNAPSHOT_AGE_MS: "0", MIN_SNAPSHOTS_TO_KEEP: "2"})
    typo = QUARANTINE.with_properties({MAX_SNAPSHOT_AGE_MS: "24h"})
    tables = {"bronze.busy_probe": busy, "bronze.default_probe": QUARANTINE, "bronze.typo": typo}
    for identifier, layout in tables.items():
        _four_position_commits(catalog, identifier, layout)
    result = job.execute_in_process(
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    assert result.output_for_node("expire_table_snapshots") == 2
    assert len(catalog.load_table("bronze.busy_probe").metadata.snapshots) == 2
    assert len(catalog.load_table("bronze.default_probe").metadata.snapshots) == 4
    assert committed_position(catalog.load_table("bronze.busy_probe"), "t") == {"0": 3}
    (output,) = [
        e
        for e in result.all_node_events
        if e.step_key == "expire_table_snapshots" and e.is_successful_output
    ]
    assert output.event_specific_data.metadata["tables"].value == {
        "bronze.busy_probe": "expired 2, kept 2 (retention 0 h, newest 2)",
        "bronze.default_probe": "expired 0, kept 4 (retention 168 h, newest 1)",
        "bronze.typo": "expired 0, kept 4 (retention 168 h, newest 1; default used: "
        "Could not parse table property history.expire.max-snapshot-age-ms to an integer: 24h)",
    }


def test_a_declared_property_reaches_an_existing_table(lakehouse_env):
    """Retention declared later in sources.yml is set on the table that exists, and
    removed again when the declaration goes; a property the lakehouse never declared
    (set by an operator) is left alone."""
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.property_probe", MARKETING_SPEND.layout)
    with table.transaction() as tx:
        tx.set_properties({MIN_SNAPSHOTS_TO_KEEP: "3"})
    declared = MARKETING_SPEND.model_copy(update={"snapshot_retention_hours": 24})
    table = ensure_table(catalog, "bronze.property_probe", declared.layout)
    assert table.properties[MAX_SNAPSHOT_AGE_MS] == str(24 * 3600 * 1000)
    assert table.properties[MIN_SNAPSHOTS_TO_KEEP] == "3"
    assert table.properties["commit.retry.num-retries"] == "0"
    before = table.metadata_location
    again = ensure_table(catalog, "bronze.property_probe", declared.layout)
    assert again.metadata_location == before  # nothing to change: no commit

    table = ensure_table(catalog, "bronze.property_probe", MARKETING_SPEND.layout)
    assert MAX_SNAPSHOT_AGE_MS not in table.properties  # the default applies again
    assert table.properties[MIN_SNAPSHOTS_TO_KEEP] == "3"
    assert table.properties["write.parquet.dict-size-bytes"] == str(256 * 1024)


def test_property_changes_racing_on_one_table_all_succeed(lakehouse_env):
    """Every run, sensor and check loading a table may change its properties at
    once (a deploy that changed sources.yml): a change whose commit loses the race
    reloads and looks again instead of failing the caller."""
    catalog = IcebergCatalogResource().load()
    ensure_table(catalog, "bronze.race_probe", MARKETING_SPEND.layout)
    layouts = [
        MARKETING_SPEND.model_copy(update={"snapshot_retention_hours": h}).layout for h in (6, 12)
    ]

    def flip(worker: int) -> None:
        own = IcebergCatalogResource().load()
        for n in range(15):
            table = own.load_table("bronze.race_probe")
            _with_properties(own, table, layouts[(worker + n) % 2])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(flip, range(4)))  # re-raises a worker's exception
    table = catalog.load_table("bronze.race_probe")
    assert table.properties[MAX_SNAPSHOT_AGE_MS] in {str(h * 3_600_000) for h in (6, 12)}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({}, Retention(timedelta(hours=168), 5)),
        ({MAX_SNAPSHOT_AGE_MS: "86400000"}, Retention(timedelta(hours=24), 5)),
        ({MIN_SNAPSHOTS_TO_KEEP: "2"}, Retention(timedelta(hours=168), 2)),
        ({MIN_SNAPSHOTS_TO_KEEP: "0"}, Retention(timedelta(hours=168), 1)),  # current stays
        ({MAX_SNAPSHOT_AGE_MS: str(2**63 - 1)}, Retention(timedelta(days=36_525), 5)),  # never
    ],
)
def test_retention_reads_icebergs_units(properties, expected):
    table = SimpleNamespace(properties=properties)
    assert Retention.of(table, Retention(timedelta(hours=168), 5)) == expected


@pytest.mark.parametrize("properties", [{MAX_SNAPSHOT_AGE_MS: "-1"}, {MIN_SNAPSHOTS_TO_KEEP: "-2"}])
def test_a_negative_retention_property_is_refused(properties):
    with pytest.raises(ValueError, match="negative"):
        Retention.of(SimpleNamespace(properties=properties), Retention(timedelta(hours=1), 1))


def test_expiry_racing_ingestion_commits_retries_and_keeps_every_position(lakehouse_env):
    """The hourly expiry runs while sources commit: a commit landing between its look
    at the snapshots and its own commit makes it look again, not fail."""
    catalog = IcebergCatalogResource().load()
    ensure_table(catalog, "bronze.expiry_race_probe", QUARANTINE)
    empty = QUARANTINE.arrow_schema().empty_table()

    def ingest() -> None:
        own = IcebergCatalogResource().load().load_table("bronze.expiry_race_probe")
        for n in range(150):
            # as ingestion commits: a lost race reloads and commits again
            with_commit_retries(
                lambda n=n: append_with_position(own.refresh(), empty, "t", {"0": n}, "r")
            )

    def expire() -> None:
        own = IcebergCatalogResource().load().load_table("bronze.expiry_race_probe")
        for _ in range(60):
            expire_snapshots(own, _soon(), keep_last=1)

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(ingest), pool.submit(expire)]:
            future.result()
    table = catalog.load_table("bronze.expiry_race_probe")
    assert committed_position(table, "t") == {"0": 149}
    assert len(table.metadata.snapshots) < 151  # expiry did commit


def _local(uri: str) -> str:
    return uri.removeprefix("file://")


def _age(path: str, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def _files_under(location: str) -> list[str]:
    root = _local(location)
    return [os.path.join(d, f) for d, _, names in os.walk(root) for f in names]


def test_orphan_files_are_removed_and_a_write_in_flight_is_kept(lakehouse_env):
    """A data file a killed run wrote but never committed is deleted once old; one a
    running ingest has just written is kept and still commits; every referenced file,
    however old, stays and the table reads back whole."""
    settings = lakehouse_env
    s3 = S3Resource().client()
    bucket = settings.landing_bucket
    catalog = IcebergCatalogResource().load()
    for n in range(3):
        body = HEADER + f"2026-11-02,search,o{n},2.00,EUR\n2026-11-02,search,o{n}-bad,?,EUR\n"
        s3.put_object(Bucket=bucket, Key=f"marketing_spend/orphan{n}.csv", Body=body)
    keys = list_new_files(s3, bucket, MARKETING_SPEND, ingested_files(catalog, MARKETING_SPEND), 9)
    ingest_files(catalog, s3, bucket, MARKETING_SPEND, keys, "r")
    bronze = catalog.load_table(MARKETING_SPEND.bronze_table)
    rows_before = bronze.scan().to_arrow().num_rows
    for path in _files_under(bronze.location()):
        _age(path, 10)  # committed files are old too: age alone must not doom them

    rows = bronze.scan().to_arrow().slice(0, 2)
    (killed,) = write_data_files(bronze, rows)  # what a run killed before its commit leaves
    _age(_local(killed.file_path), 4)
    (in_flight,) = write_data_files(bronze, rows)  # a run between write and commit, now
    assert _local(killed.file_path) not in {_local(f) for f in referenced_files(bronze)}

    cutoff = datetime.now(UTC) - timedelta(days=3)
    dry = remove_orphan_files(bronze, cutoff, dry_run=True)
    assert (dry.orphans, dry.deleted, dry.too_young) == (1, 0, 1), dry
    assert dry.paths == [_local(killed.file_path)]
    assert dry.orphan_bytes == os.path.getsize(_local(killed.file_path))
    assert os.path.exists(_local(killed.file_path))

    result = remove_orphan_files(catalog.load_table(MARKETING_SPEND.bronze_table), cutoff)
    assert (result.orphans, result.deleted, result.too_young) == (1, 1, 1), result
    assert not os.path.exists(_local(killed.file_path))
    assert os.path.exists(_local(in_flight.file_path))
    bronze = catalog.load_table(MARKETING_SPEND.bronze_table)
    assert bronze.scan().to_arrow().num_rows == rows_before  # every data file still there
    append_files_with_position(bronze, [in_flight], "orphan-probe", ["in-flight"], "r")
    assert catalog.load_table(MARKETING_SPEND.bronze_table).scan().to_arrow().num_rows == (
        rows_before + 2
    )


def test_files_of_expired_snapshots_become_orphans(lakehouse_env):
    """pyiceberg's expiry leaves the manifest lists of expired snapshots behind: they
    are orphans, and removing them keeps the positions and the rows."""
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "quarantine.orphan_expiry_probe", QUARANTINE)
    row = QUARANTINE.arrow_schema().empty_table()
    for n in range(4):
        append_with_position(table, row, "t", {"0": n}, "r")
    before = set(_files_under(table.location()))
    expire_snapshots(catalog.load_table("quarantine.orphan_expiry_probe"), _soon(), 1)
    table = catalog.load_table("quarantine.orphan_expiry_probe")
    result = remove_orphan_files(table, _soon())
    assert result.orphans >= 3 and result.deleted == result.orphans, result
    assert set(result.paths) <= before
    assert not any(os.path.exists(p) for p in result.paths)
    table = catalog.load_table("quarantine.orphan_expiry_probe")
    assert committed_position(table, "t") == {"0": 3}
    assert all(os.path.exists(_local(f)) for f in referenced_files(table))


def test_maintenance_job_reports_orphans_and_a_dry_run_deletes_nothing(lakehouse_env, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_ORPHAN_FILE_MIN_AGE_HOURS", "0")
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.orphan_job_probe", QUARANTINE)
    row = pa.Table.from_pylist(
        [{"_source": "t", "_rule": "r", "_reason": "probe", "_ingested_at": datetime.now(UTC)}],
        schema=QUARANTINE.arrow_schema(),
    )
    append_with_position(table, row, "t", {"0": 1}, "r")
    (orphan,) = write_data_files(table, row)
    path = _local(orphan.file_path)

    def run(dry_run: bool) -> dict:
        result = iceberg_maintenance_job.execute_in_process(
            run_config={"ops": {"remove_table_orphan_files": {"config": {"dry_run": dry_run}}}},
            resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
            instance=dg.DagsterInstance.ephemeral(),
        )
        assert result.success
        (materialization,) = [
            e
            for e in result.all_node_events
            if e.step_key == "remove_table_orphan_files" and e.is_successful_output
        ]
        return materialization.event_specific_data.metadata

    dry = run(dry_run=True)
    assert dry["dry run"].value is True
    assert dry["files deleted"].value == 0
    probe = dry["tables"].value["bronze.orphan_job_probe"]
    assert probe["paths"] == [path] and probe["bytes"] == os.path.getsize(path)
    assert os.path.exists(path)

    done = run(dry_run=False)
    assert done["files deleted"].value >= 1
    assert not os.path.exists(path)
    assert catalog.load_table("bronze.orphan_job_probe").scan().to_arrow().num_rows == 1
