"""kill -9 during ingestion, many times at random points: after a clean rerun every
produced record is in bronze (or quarantine) exactly once."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import pytest

from lakehouse.demo.load import publish_clickstream
from lakehouse.sources import sources
from resources.iceberg import IcebergCatalogResource
from tests.expected import expected_clickstream

KILLS = 8


@pytest.mark.timeout(600)
def test_killed_ingestion_lands_every_record_exactly_once(lakehouse_env):
    from lakehouse.demo.clickstream import generate

    settings = lakehouse_env
    messages = generate(scale=2)
    assert publish_clickstream(settings, scale=2) == len(messages)
    worker = [sys.executable, "-m", "tests.crash_worker", "40"]  # ~100 commits in all
    rng = random.Random(1234)
    kills = 0
    for _ in range(KILLS):
        process = subprocess.Popen(worker, stdout=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(2.5, 7.0))  # start-up is ~2-3 s: kill before, during, after commits
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
    assert kills >= KILLS // 2, "the worker finished too fast to be killed; raise the data size"
    clean = subprocess.run(worker, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]

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
