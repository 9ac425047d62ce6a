"""Applying a Debezium changelog: current state and SCD2 history of one table.

Silver is recomputed from the whole bronze changelog, ordered by the source's LSN,
so replays, duplicates and late or out-of-order events converge on the same result:
an event never overwrites a change that happened after it in the source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyiceberg.table import Table

from lakehouse.declarations.sources import CdcSource
from lakehouse.ingest.debezium import UNAVAILABLE, ChangeEvent, parse_change


@dataclass(frozen=True)
class OrderedChange:
    """A change with its place in the source (LSN) and in Kafka (tie-breakers)."""

    event: ChangeEvent
    partition: int
    offset: int

    @property
    def order(self) -> tuple[int, int, int, int]:
        return (self.event.lsn or -1, self.event.ts_ms or 0, self.partition, self.offset)


@dataclass
class AppliedChanges:
    current: list[dict[str, Any]]
    history: list[dict[str, Any]]
    events_applied: int
    duplicates_skipped: int
    toast_values_carried: int


def apply_changes(changes: list[OrderedChange], keys: tuple[str, ...]) -> AppliedChanges:
    state: dict[tuple, dict[str, Any]] = {}
    history: dict[tuple, list[dict[str, Any]]] = {}
    seen: set[tuple] = set()
    duplicates = carried = applied = 0

    def close(key: tuple, at: datetime) -> None:
        versions = history.get(key)
        if versions and versions[-1]["is_current"]:
            versions[-1]["valid_to"] = at
            versions[-1]["is_current"] = False

    for change in sorted(changes, key=lambda c: c.order):
        event = change.event
        at = _ts(event.ts_ms)
        if event.op == "t":
            for key in list(state):
                close(key, at)
            state.clear()
            applied += 1
            continue
        image = event.after if event.op in ("c", "u", "r") else event.before
        key = tuple(image.get(k) for k in keys)
        identity = (key, event.lsn, event.op)
        if event.lsn is not None and identity in seen:
            duplicates += 1  # the same change delivered twice (producer retry, replay)
            continue
        seen.add(identity)
        applied += 1
        if event.op == "d":
            state.pop(key, None)
            close(key, at)
            continue
        previous = state.get(key, {})
        row = {}
        for column, value in event.after.items():
            if value is UNAVAILABLE:  # unchanged TOAST column: keep what we had
                value = previous.get(column)
                carried += 1
            row[column] = value
        row["_lsn"] = event.lsn
        row["_source_ts"] = at
        state[key] = row
        close(key, at)
        history.setdefault(key, []).append(
            {**row, "_op": event.op, "valid_from": at, "valid_to": None, "is_current": True}
        )
    current = [state[k] for k in sorted(state, key=_sortable)]
    versions = [v for k in sorted(history, key=_sortable) for v in history[k]]
    return AppliedChanges(current, versions, applied, duplicates, carried)


def _ts(ts_ms: int | None) -> datetime:
    return datetime.fromtimestamp((ts_ms or 0) / 1000, UTC)


def _sortable(key: tuple) -> tuple:
    return tuple("" if v is None else str(v) for v in key)


def read_changelog(bronze: Table, source: CdcSource) -> list[OrderedChange]:
    """The bronze changelog of ``source`` as ordered changes (tombstones left out)."""
    log = bronze.scan(
        selected_fields=("op", "payload", "_kafka_partition", "_kafka_offset")
    ).to_arrow()
    return [
        OrderedChange(parse_change(payload.encode(), source.columns), partition, offset)
        for op, payload, partition, offset in zip(
            log["op"].to_pylist(),
            log["payload"].to_pylist(),
            log["_kafka_partition"].to_pylist(),
            log["_kafka_offset"].to_pylist(),
            strict=True,
        )
        if op != "tombstone"
    ]
