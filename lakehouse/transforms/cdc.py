"""Applying a Debezium changelog: current state and SCD2 history of one table.

Changes are applied in the source's LSN order, so replays, duplicates and late or
out-of-order events converge on the same result: an event never overwrites a change
that happened after it in the source. A full rebuild applies the whole bronze
changelog; an incremental one applies the new changes on top of the history versions
silver holds for the keys they touch (``stored``), unless one of them is late
(``late_change``), which takes the whole changelog again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
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


def apply_changes(
    changes: list[OrderedChange],
    keys: tuple[str, ...],
    stored: dict[tuple, list[dict[str, Any]]] | None = None,
) -> AppliedChanges:
    """Current state and history after ``changes``, applied in source order.

    ``stored``: the history versions silver already holds for some keys (an incremental
    build passes those of the keys its changes touch). They seed the state: the open
    version is the key's current row, their (LSN, op) pairs are changes already
    applied. Only the keys of ``changes`` and ``stored`` come back.
    """
    state: dict[tuple, dict[str, Any]] = {}
    history: dict[tuple, list[dict[str, Any]]] = {}
    seen: set[tuple] = set()
    for key, versions in (stored or {}).items():
        history[key] = [dict(v) for v in versions]
        for version in versions:
            seen.add((key, version["_lsn"], version["_op"]))
            if version["is_current"]:
                state[key] = {k: v for k, v in version.items() if k not in VERSION_COLUMNS}
    duplicates = carried = applied = 0

    def boundary(key: tuple, at: datetime) -> datetime:
        """When a change of ``key`` takes effect: its commit time, or its predecessor's
        boundary if that is later (a snapshot read stamped after a commit it precedes)."""
        versions = history.get(key)
        if not versions:
            return at
        last = versions[-1]
        return max(at, last["valid_from"] if last["is_current"] else last["valid_to"])

    def close(key: tuple, at: datetime) -> None:
        versions = history.get(key)
        if versions and versions[-1]["is_current"]:
            versions[-1]["valid_to"] = at
            versions[-1]["is_current"] = False

    for change in sorted(changes, key=lambda c: c.order):
        event = change.event
        committed = _ts(event.ts_ms)
        if event.op == "t":
            for key in list(state):
                close(key, boundary(key, committed))
            state.clear()
            applied += 1
            continue
        key = key_of(event, keys)
        identity = (key, event.lsn, event.op)
        if event.lsn is not None and identity in seen:
            duplicates += 1  # the same change delivered twice (producer retry, replay)
            continue
        seen.add(identity)
        applied += 1
        at = boundary(key, committed)
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
        row["_source_ts"] = committed
        state[key] = row
        close(key, at)
        history.setdefault(key, []).append(
            {**row, "_op": event.op, "valid_from": at, "valid_to": None, "is_current": True}
        )
    current = [state[k] for k in sorted(state, key=_sortable)]
    versions = [v for k in sorted(history, key=_sortable) for v in history[k]]
    return AppliedChanges(current, versions, applied, duplicates, carried)


VERSION_COLUMNS = ("_op", "valid_from", "valid_to", "is_current")


def key_of(event: ChangeEvent, keys: tuple[str, ...]) -> tuple:
    image = event.after if event.op in ("c", "u", "r") else event.before
    return tuple(image.get(k) for k in keys)


def new_keys(
    changes: list[OrderedChange],
    keys: tuple[str, ...],
    stored: dict[tuple, list[dict[str, Any]]],
    key: Callable[[OrderedChange], tuple] | None = None,
) -> tuple[set[tuple], int | None]:
    """Keys the changes (re)open, which silver holds no open version of; their lowest LSN.

    A delete of such a key may already be in bronze with a higher LSN: it arrived first,
    for a row silver did not hold open, and changed nothing then. The caller adds those
    deletes to the changes, so the older change is applied before the delete, as in a
    full rebuild. (A key silver holds open needs no such look: a delete newer than a new
    change would have closed it, so that change is late, see ``late_change``.)
    ``key``: the change's key as ``stored`` holds it (masked, where a key column is PII).
    """
    key = key or (lambda change: key_of(change.event, keys))
    fresh = [
        c
        for c in changes
        if c.event.op in ("c", "u", "r")
        and not (stored.get(key(c)) and stored[key(c)][-1]["is_current"])
    ]
    if not fresh:
        return set(), None
    lsns = [c.event.lsn for c in fresh if c.event.lsn is not None]
    return {key(c) for c in fresh}, min(lsns) if lsns else None


def late_change(
    changes: list[OrderedChange],
    keys: tuple[str, ...],
    stored: dict[tuple, list[dict[str, Any]]],
    key: Callable[[OrderedChange], tuple] | None = None,
) -> str | None:
    """Why ``changes`` cannot be applied on top of the ``stored`` versions, or None.

    A change is applied incrementally only if it happened after everything silver holds
    for its key: after the key's current version (by LSN, then commit time), or, for a
    deleted key, after the delete that closed its last version (whose LSN silver does
    not keep: the version's LSN and, strictly, the delete's commit time bound it). A change that is
    already in the history (same LSN and op) is a duplicate and harmless. Anything else
    is late (a replay, a redelivery out of order) and needs the key's whole changelog.
    ``key``: the change's key as ``stored`` holds it (masked, where a key column is PII);
    the reason names that form, so a PII key never reaches the run's metadata.
    """
    key_in_silver = key or (lambda change: key_of(change.event, keys))
    for change in changes:
        event = change.event
        if event.op == "t":
            return f"a truncate at LSN {event.lsn} empties the table"
        if event.lsn is None:
            return "a change without an LSN cannot be ordered against silver"
        key = key_in_silver(change)
        versions = stored.get(key)
        if not versions:
            continue
        if any(v["_lsn"] == event.lsn and v["_op"] == event.op for v in versions):
            continue  # a duplicate of an applied change
        last = versions[-1]
        ts = _ts(event.ts_ms)
        if last["is_current"]:
            if (event.lsn, ts) <= (last["_lsn"], last["valid_from"]):
                return f"a change at LSN {event.lsn} for key {key} is older than silver's"
        elif event.lsn <= last["_lsn"] or ts <= last["valid_to"]:
            # at the delete's own commit time it may precede the delete: not decidable here
            return f"a change at LSN {event.lsn} for deleted key {key} is older than its delete"
    return None


def _ts(ts_ms: int | None) -> datetime:
    return datetime.fromtimestamp((ts_ms or 0) / 1000, UTC)


def _sortable(key: tuple) -> tuple:
    return tuple("" if v is None else str(v) for v in key)


def read_changelog(bronze: Table, source: CdcSource) -> list[OrderedChange]:
    """The whole bronze changelog of ``source`` as ordered changes (tombstones left out)."""
    fields = ("op", "payload", "_kafka_partition", "_kafka_offset")
    return ordered_changes(bronze.scan(selected_fields=fields).to_arrow(), source)


def ordered_changes(log: pa.Table, source: CdcSource) -> list[OrderedChange]:
    """Bronze changelog rows (op, payload, Kafka coordinates) as ordered changes."""
    return [
        OrderedChange(
            parse_change(payload.encode(), source.columns, source.connector), partition, offset
        )
        for op, payload, partition, offset in zip(
            log["op"].to_pylist(),
            log["payload"].to_pylist(),
            log["_kafka_partition"].to_pylist(),
            log["_kafka_offset"].to_pylist(),
            strict=True,
        )
        if op != "tombstone"
    ]
