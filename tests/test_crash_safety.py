"""kill -9 during ingestion, many times at random points: after a clean rerun every
produced record is in bronze (or quarantine) exactly once. One test per path: Kafka
events, landing files, database watermark extraction."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import psycopg
import pytest

from lakehouse.declarations.sources import sources
from lakehouse.demo.load import publish_clickstream
from resources.iceberg import IcebergCatalogResource
from resources.s3 import S3Resource
from tests.crash_worker import ITEMS
from tests.expected import expected_clickstream

KILLS = 8


def _kill_repeatedly(worker: list[str], seed: int, env: dict | None = None) -> None:
    """Start ``worker`` KILLS times and SIGKILL it at a random point, then run it clean.

    The point is counted in the worker's own progress, not in seconds (a faster machine
    or a faster start-up would let it finish first): after 0-3 committed batches (it
    prints a line per commit), then a moment into the next one. So the kills fall while
    it starts, while files are written (for Kafka, while polling goes on), and between a
    data file and its catalog commit; with work always left, on any machine.
    """
    rng = random.Random(seed)
    kills = 0
    for _ in range(KILLS):
        process = subprocess.Popen(worker, stdout=subprocess.PIPE, text=True, env=env)
        commits = rng.randint(0, 3)
        for _ in range(commits):
            if not process.stdout.readline():
                break  # it finished
        time.sleep(rng.uniform(0, 3.0) if commits == 0 else rng.uniform(0, 0.15))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
        process.stdout.close()
    assert kills >= KILLS // 2, "the worker finished too fast to be killed; raise the data size"
    clean = subprocess.run(worker, capture_output=True, text=True, timeout=300, env=env)
    assert clean.returncode == 0, clean.stderr[-2000:]


@pytest.mark.timeout(600)
def test_killed_ingestion_lands_every_record_exactly_once(lakehouse_env):
    from lakehouse.demo.clickstream import generate

    settings = lakehouse_env
    messages = generate(scale=2)
    assert publish_clickstream(settings, scale=2) == len(messages)
    # 1 KiB data files: several per batch, written while polling, before the commit
    _kill_repeatedly([sys.executable, "-m", "tests.crash_worker", "kafka", "40", "1024"], 1234)

    source = sources().kafka_source("clickstream")
    catalog = IcebergCatalogResource().load()
    bronze = catalog.load_table(source.bronze_table).scan().to_arrow()
    quarantine = catalog.load_table(source.quarantine_table).scan().to_arrow()
    coords = list(
        zip(
            bronze["_kafka_partition"].to_pylist(), bronze["_kafka_offset"].to_pylist(), strict=True
        )
    ) + list(
        zip(
            quarantine["_kafka_partition"].to_pylist(),
            quarantine["_kafka_offset"].to_pylist(),
            strict=True,
        )
    )
    assert len(coords) == len(set(coords)) == len(messages)
    expected = expected_clickstream(messages)
    assert bronze.num_rows == expected["bronze_rows"]
    # payloads are the produced ones, each once (duplicates upstream are separate records)
    produced = sorted(m.value.decode() for m in messages if _bronze_worthy(m.value))
    assert sorted(bronze["payload"].to_pylist()) == produced


def _bronze_worthy(value: bytes) -> bool:
    try:
        event = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return False
    return isinstance(event, dict) and all(
        event.get(k) not in (None, "") for k in ("event_id", "event_type", "user_id", "ts")
    )


FILES = 60
ROWS = 40


@pytest.mark.timeout(600)
def test_killed_landing_ingestion_lands_every_file_row_exactly_once(lakehouse_env):
    """Every row of every file once in bronze or quarantine; broken files once, whole."""
    settings = lakehouse_env
    s3 = S3Resource().client()
    prefix = sources().landing_source("marketing_spend").key_prefix
    good, bad = set(), set()
    for f in range(FILES):
        lines = ["spend_date,channel,campaign,spend,currency"]
        for r in range(ROWS):
            row_id = f"f{f}-r{r}"
            spend = "oops" if r % 13 == 5 else f"{r}.50"
            (bad if spend == "oops" else good).add(row_id)
            lines.append(f"2026-11-01,email,{row_id},{spend},EUR")
        body = "\n".join(lines) + "\n"
        s3.put_object(Bucket=settings.landing_bucket, Key=f"{prefix}f{f:03d}.csv", Body=body)
    s3.put_object(Bucket=settings.landing_bucket, Key=f"{prefix}zz-empty.csv", Body=b"")

    _kill_repeatedly([sys.executable, "-m", "tests.crash_worker", "landing", "2"], 4321)

    source = sources().landing_source("marketing_spend")
    catalog = IcebergCatalogResource().load()
    bronze = catalog.load_table(source.bronze_table).scan().to_arrow()
    quarantine = catalog.load_table(source.quarantine_table).scan().to_arrow()
    landed = bronze["campaign"].to_pylist()
    assert len(landed) == len(set(landed)) and set(landed) == good
    rejected = list(
        zip(quarantine["_file"].to_pylist(), quarantine["_row"].to_pylist(), strict=True)
    )
    assert len(rejected) == len(set(rejected)) == len(bad) + 1  # + the empty file, once
    assert bronze.num_rows + quarantine.num_rows == FILES * ROWS + 1
    assert set(quarantine["_rule"].to_pylist()) == {"schema", "empty_file"}


@pytest.mark.timeout(600)
def test_killed_database_extraction_lands_every_row_exactly_once(lakehouse_env, make_database):
    dsn = make_database("crash")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "create table items (item_id int primary key, label text, "
            "updated_at timestamptz not null)"
        )
        # ties on the watermark across batch boundaries
        conn.execute(
            "insert into items select i, 'item ' || i, "
            "timestamptz '2026-11-01 00:00:00+00' + (i % 97) * interval '1 minute' "
            "from generate_series(1, 3000) i"
        )
    env = {**os.environ, "CRASH_WORKER_DSN": dsn}
    _kill_repeatedly([sys.executable, "-m", "tests.crash_worker", "database", "40"], 99, env)

    catalog = IcebergCatalogResource().load()
    bronze = catalog.load_table(ITEMS.bronze_table).scan().to_arrow()
    ids = [int(i) for i in bronze["item_id"].to_pylist()]
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == set(range(1, 3001))
