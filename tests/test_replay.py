"""Replay of quarantined Kafka records after a fix: what passes lands in bronze once, with
its original coordinates, and leaves quarantine; a replay interrupted between its two
commits is completed by the next; the CLI reports what stays and why."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from lakehouse.declarations.sources import sources
from lakehouse.ingest.kafka.reader import ingest_kafka_batch
from lakehouse.quality.replay import append_replayed, replay_quarantine
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource

CLICKSTREAM = sources().kafka_source("clickstream")
# the "fix": user_id turned out to be optional for anonymous visitors
RELAXED = CLICKSTREAM.model_copy(update={"required": ("event_id", "event_type", "ts")})


def _event(n: int, **extra) -> dict:
    return {
        "event_id": f"r-{n}",
        "event_type": "page_view",
        "user_id": f"u-{n}",
        "page": "/",
        "ts": "2026-11-01T10:00:00Z",
        **extra,
    }


def _land(settings) -> str:
    events = [json.dumps(_event(n)).encode() for n in range(6)]
    anonymous = [
        json.dumps({k: v for k, v in _event(n).items() if k != "user_id"}).encode()
        for n in range(6, 10)
    ]
    broken = [b'{"event_id": "r-10", ', b"\xff\xfe not utf-8"]
    topic = CLICKSTREAM.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    try:
        for value in [*events, *anonymous, *broken]:
            producer.send(topic, value=value)
        producer.flush()
    finally:
        producer.close()
    catalog = IcebergCatalogResource().load()
    batch = ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, "run-1")
    assert (batch.landed, batch.quarantined) == (6, 6)
    return topic


def _coordinates(catalog) -> Counter:
    seen: Counter = Counter()
    for name in ("bronze.clickstream", "quarantine.clickstream"):
        arrow = catalog.load_table(name).scan().to_arrow()
        partitions, offsets = arrow["_kafka_partition"], arrow["_kafka_offset"]
        seen.update(zip(partitions.to_pylist(), offsets.to_pylist(), strict=True))
    return seen


def test_replay_after_a_fix_lands_each_record_once_and_an_interrupted_replay_completes(
    lakehouse_env,
):
    _land(lakehouse_env)
    catalog = IcebergCatalogResource().load()
    before = _coordinates(catalog)
    quarantined = catalog.load_table("quarantine.clickstream").scan().to_arrow().to_pylist()
    anonymous = {
        (r["_kafka_partition"], r["_kafka_offset"])
        for r in quarantined
        if r["_rule"] == "required_fields"
    }
    assert len(anonymous) == 4

    # a replay that dies after its bronze commit, before cleaning quarantine
    partial, _ = append_replayed(catalog, RELAXED, "replay-1")
    assert partial.replayed == 4 and partial.still_failing == {"json": 1}
    assert partial.not_replayable == {"utf8": 1}

    # the next replay finishes the job and appends nothing twice
    result = replay_quarantine(catalog, RELAXED, "replay-2")
    assert (result.replayed, result.already_in_bronze, result.removed_from_quarantine) == (0, 4, 4)
    again = replay_quarantine(catalog, RELAXED, "replay-3")
    assert (again.replayed, again.already_in_bronze, again.removed_from_quarantine) == (0, 0, 0)

    bronze = catalog.load_table("bronze.clickstream").scan().to_arrow().to_pylist()
    replayed = [r for r in bronze if r["_run_id"] == "replay-1"]
    assert {(r["_kafka_partition"], r["_kafka_offset"]) for r in replayed} == anonymous
    assert sorted(r["event_id"] for r in replayed) == ["r-6", "r-7", "r-8", "r-9"]
    rules = [
        r["_rule"]
        for r in catalog.load_table("quarantine.clickstream").scan().to_arrow().to_pylist()
    ]
    assert sorted(rules) == ["json", "utf8"]
    after = _coordinates(catalog)
    assert set(after) == set(before) and set(after.values()) == {1}  # every offset once


def test_replay_cli_reports_what_stays_quarantined_and_why(lakehouse_env):
    _land(lakehouse_env)
    done = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "replay", "clickstream"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # sources.yml still requires user_id: nothing replays, each reason is reported
    assert "0 replayed into bronze" in done.stdout
    assert "'required_fields': 4" in done.stdout and "'json': 1" in done.stdout
    assert "'utf8': 1" in done.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "lakehouse.cli", "replay", "nope"], capture_output=True, text=True
    )
    assert unknown.returncode == 1 and "no Kafka or CDC source 'nope'" in unknown.stderr
