"""Duplicate event_ids in bronze: the copy at the earliest Kafka (partition, offset)
wins, whatever order the bronze scan returns rows in."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pyarrow as pa

from lakehouse.declarations.sources import sources
from lakehouse.transforms.page_views import build_page_views


def _bronze(rows: list[tuple[str, int, int, str]]):
    layout = sources().kafka_source("clickstream").layout
    records = [
        {
            "event_id": event_id,
            "event_type": "page_view",
            "user_id": "u-1",
            "event_ts": "2026-11-01T10:00:00Z",
            "payload": json.dumps({"event_id": event_id, "page": page, "session_id": "s"}),
            "_source": "clickstream",
            "_kafka_topic": "events.clickstream",
            "_kafka_partition": partition,
            "_kafka_offset": offset,
            "_ingested_at": datetime(2026, 11, 1, tzinfo=UTC),
            "_run_id": "r",
        }
        for event_id, partition, offset, page in rows
    ]
    return pa.Table.from_pylist(records, schema=layout.arrow_schema())


def test_earliest_kafka_position_wins_in_any_scan_order():
    rows = [
        ("e-1", 2, 5, "/late-copy"),
        ("e-1", 0, 9, "/first"),  # partition 0 sorts before partition 2
        ("e-1", 0, 12, "/retry"),
        ("e-2", 1, 3, "/only"),
        ("e-3", 1, 7, "/first"),
        ("e-3", 1, 8, "/retry"),
    ]
    for seed in range(5):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        result = build_page_views(_bronze(shuffled))
        kept = {
            r["event_id"]: (r["_kafka_partition"], r["_kafka_offset"], r["page"])
            for r in result.silver.to_pylist()
        }
        assert kept == {
            "e-1": (0, 9, "/first"),
            "e-2": (1, 3, "/only"),
            "e-3": (1, 7, "/first"),
        }
        assert result.duplicates_removed == 3
