"""Snapshot expiry that never loses a committed source position.

Positions live in snapshot summaries (``commits.py``), so expiring the snapshot
that carries one would make ingestion restart from an older position or from
nothing, and land records twice. Before expiring, a *checkpoint* commit (an empty
append) records every position of the current ancestry in one snapshot: the newest
value for a single position (Kafka offsets, a watermark, a quarantine base/next),
the union for a position that is a set of items (landing files). Only snapshots
older than that checkpoint are expired, so whatever the retention, every position
is still readable by the usual ancestry walk.

pyiceberg 0.12 has no orphan-file removal and its expiry does not delete data
files: storage is reclaimed by Spark's ``remove_orphan_files`` procedure (or a
later pyiceberg), not here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of

from lakehouse.tables.commits import POSITION_PREFIX, with_commit_retries

CHECKPOINT_KEY = "lakehouse.maintenance"
RETRIES_OFF = "commit.retry.num-retries"


@dataclass
class ExpiryResult:
    table: str
    checkpoint_snapshot_id: int | None
    expired: int
    kept: int


def merged_positions(table: Table) -> dict[str, str]:
    """Every position key of the current ancestry with its merged value (JSON text)."""
    newest: dict[str, object] = {}
    unions: dict[str, set] = {}
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        for key, text in (
            snapshot.summary.additional_properties if snapshot.summary else {}
        ).items():
            if not key.startswith(POSITION_PREFIX):
                continue
            value = json.loads(text)
            if isinstance(value, list):
                unions.setdefault(key, set()).update(value)
            else:
                newest.setdefault(key, value)
    merged = {k: json.dumps(v, sort_keys=True) for k, v in newest.items()}
    merged.update({k: json.dumps(sorted(v)) for k, v in unions.items()})
    return merged


def checkpoint_positions(table: Table) -> int | None:
    """Commit the merged positions in one new snapshot (unless the current one has them).

    Returns the snapshot that carries all of them, or None if the table has none.
    The commit must not be rebased by pyiceberg onto a concurrent ingest commit (its
    positions would then be older than that commit's): retries are ours, re-merging.
    """
    if table.properties.get(RETRIES_OFF) != "0":
        with table.transaction() as tx:
            tx.set_properties({RETRIES_OFF: "0"})

    def attempt() -> int | None:
        table.refresh()
        current = table.current_snapshot()
        merged = merged_positions(table)
        if current is None or not merged:
            return None
        summary = current.summary.additional_properties if current.summary else {}
        if all(summary.get(k) == v for k, v in merged.items()):
            return current.snapshot_id
        empty = pa.Table.from_pylist([], schema=table.schema().as_arrow())
        table.append(empty, snapshot_properties={**merged, CHECKPOINT_KEY: "position-checkpoint"})
        return table.current_snapshot().snapshot_id

    return with_commit_retries(attempt)


def expire_snapshots(table: Table, older_than: datetime, keep_last: int) -> ExpiryResult:
    """Expire snapshots older than ``older_than`` except the newest ``keep_last`` of the
    ancestry and anything not older than the position checkpoint."""
    name = ".".join(table.name())
    checkpoint = checkpoint_positions(table)
    table.refresh()
    current = table.current_snapshot()
    if current is None:
        return ExpiryResult(name, None, 0, 0)
    ancestry = [s.snapshot_id for s in ancestors_of(current, table.metadata)]
    protected = set(ancestry[: max(keep_last, 1)])
    floor_ms = older_than.timestamp() * 1000
    if checkpoint is not None:
        floor_ms = min(floor_ms, table.metadata.snapshot_by_id(checkpoint).timestamp_ms)
        protected.add(checkpoint)
    doomed = [
        s.snapshot_id
        for s in table.metadata.snapshots
        if s.timestamp_ms < floor_ms and s.snapshot_id not in protected
    ]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
    table.refresh()
    return ExpiryResult(name, checkpoint, len(doomed), len(table.metadata.snapshots))
