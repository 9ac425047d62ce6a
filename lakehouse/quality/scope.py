"""What a quality check has to read: the rows that changed since its last good evaluation.

A silver table is a function of bronze, and bronze is append-only with the run id of
each commit in its snapshot summary and on its rows. So the rows that can have
changed since a check last held are those derived from the bronze rows appended
since: for ``silver.page_views`` the event-date partitions those events landed in,
for a CDC table (current state and history) the keys those changes touched, for a
typed table (a landing or database source) the keys of the new rows, typed as silver
types them. The check reads them with a row filter, instead of the whole table.

The base of the range is the silver snapshot the check evaluated last, recorded in
its metadata (``lakehouse/checked_snapshot_id``): for a blocking rule the last time
it *passed* (a failure is reported again until fixed), for a ``warn`` rule the last
time it ran (an acknowledged warning is not repeated). Anything the range cannot
vouch for makes the check full, and says why in its metadata: no earlier evaluation,
a base snapshot expired or not an ancestor, a silver snapshot written outside a
materialization (no bronze snapshot in its summary), a bronze truncate, a typed table
whose key is masked in silver, a table without a scope rule, or the check's ``full`` config
(launch the checks with it after changing a contract or the code that builds silver).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    BooleanExpression,
    In,
    IsNull,
    Or,
)
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of

from lakehouse.declarations.sources import CdcSource, DatabaseSource, LandingSource, sources
from lakehouse.ingest.debezium import parse_change
from lakehouse.tables.commits import RUN_ID_KEY
from lakehouse.tables.rebuilds import BUILT_FROM_KEY as BRONZE_SNAPSHOT_KEY
from lakehouse.tables.replace import values_filter

CHECKED_SNAPSHOT = "lakehouse/checked_snapshot_id"
SCOPE = "lakehouse/check_scope"


@dataclass(frozen=True)
class Scope:
    """Every row (``column`` None), or the rows whose ``column`` is one of ``values``."""

    reason: str
    column: str | None = None
    values: frozenset = field(default_factory=frozenset)

    @property
    def full(self) -> bool:
        return self.column is None

    @property
    def row_filter(self) -> BooleanExpression:
        if self.full:
            return AlwaysTrue()
        present = self.values - {None}
        inside = In(self.column, set(present)) if present else AlwaysFalse()
        # a new row without a key must be checked too (its key rule fails on it)
        return Or(inside, IsNull(self.column)) if None in self.values else inside

    @property
    def file_filter(self) -> BooleanExpression:
        """A filter that prunes the data files holding no row in scope, cheap to bind
        (``tables.replace.values_filter``); the rows it keeps are told by ``mask``."""
        return AlwaysTrue() if self.full else values_filter(self.column, self.values)

    def mask(self, rows: pa.Table) -> pa.ChunkedArray | None:
        """True for the rows of ``rows`` in scope (None: every row is)."""
        if self.full:
            return None
        present = [v for v in self.values if v is not None]
        column = rows[self.column]
        inside = pc.is_in(column, value_set=pa.array(present, column.type))
        return pc.or_(inside, pc.is_null(column)) if None in self.values else inside

    def metadata(self) -> dict[str, Any]:
        shown = sorted(str(v) for v in self.values)
        return {
            "mode": "full" if self.full else "incremental",
            "reason": self.reason,
            **({} if self.full else {"column": self.column, "values": shown[:20]}),
            "value_count": len(self.values),
        }


def full(reason: str) -> Scope:
    return Scope(reason)


def _properties(snapshot: Snapshot | None) -> dict[str, str]:
    if snapshot is None or snapshot.summary is None:
        return {}
    return dict(snapshot.summary.additional_properties)


def _is_replace(snapshot: Snapshot) -> bool:
    """A compaction: the same rows in other files, nothing for a check to re-read."""
    return snapshot.summary is not None and snapshot.summary.operation == Operation.REPLACE


def _range(table: Table, since: int) -> list[Snapshot] | None:
    """Snapshots after ``since`` up to the current one that wrote rows (compactions left
    out), or None if ``since`` is no ancestor."""
    current = table.current_snapshot()
    out = []
    for snapshot in ancestors_of(current, table.metadata) if current else []:
        if snapshot.snapshot_id == since:
            return out
        if not _is_replace(snapshot):
            out.append(snapshot)
    return None


def _written_by(table: Table, snapshot_id: int) -> Snapshot | None:
    """``snapshot_id`` itself, or the write below it when it is a compaction (a check that
    ran right after one recorded the compaction's snapshot)."""
    for snapshot in ancestors_of(table.metadata.snapshot_by_id(snapshot_id), table.metadata):
        if not _is_replace(snapshot):
            return snapshot
    return None


ScopedSource = CdcSource | DatabaseSource | LandingSource


def _source_of(table: str) -> ScopedSource | str | None:
    if table == "silver.page_views":
        return "clickstream"
    name = table.split(".", 1)[1]
    declared = sources()
    for source in declared.cdc:
        if name in (source.name, f"{source.name}_history"):
            return source
    for source in (*declared.database, *declared.landing):
        if name == source.name:
            return source
    return None


def bronze_table_of(catalog, contract_table: str) -> Table | None:
    source = _source_of(contract_table)
    if source is None:
        return None
    if isinstance(source, str):
        return catalog.load_table(sources().kafka_source(source).bronze_table)
    return catalog.load_table(source.bronze_table)


def new_bronze_runs(table: Table, bronze: Table, since: int | None) -> tuple[set[str] | None, str]:
    """The runs whose bronze appends ``table`` took in since its snapshot ``since``.

    None (with the reason) when the range cannot vouch for the rows outside them.
    """
    if since is None:
        return None, "no earlier good evaluation to start from"
    silver_range = _range(table, since)
    if silver_range is None:
        return None, f"snapshot {since} of the last good evaluation is gone (expired?)"
    if not silver_range:
        return set(), "nothing written since the last good evaluation"
    if any(BRONZE_SNAPSHOT_KEY not in _properties(s) for s in silver_range):
        return None, "the table was written outside a materialization since"
    start = _properties(_written_by(table, since)).get(BRONZE_SNAPSHOT_KEY)
    end = _properties(silver_range[0]).get(BRONZE_SNAPSHOT_KEY)
    if not start or not end:
        return None, "the snapshots do not say which bronze snapshot they were built from"
    expired = [s for s in (start, end) if bronze.metadata.snapshot_by_id(int(s)) is None]
    if expired:
        return None, (
            f"bronze snapshot {expired[0]} is expired: the changes since the last good "
            "evaluation are no longer listed (bronze keeps less history than this table)"
        )
    runs = _appending_runs(bronze, int(start), int(end))
    if runs is None:
        return None, "the bronze snapshots of the range are not appends by runs"
    return runs, f"bronze appended by {len(runs)} run(s) since the last good evaluation"


def changed_scope(catalog, table: Table, contract_table: str, since: int | None) -> Scope:
    """The rows of ``table`` that may have changed since silver snapshot ``since``."""
    source = _source_of(contract_table)
    if source is None:
        return full(f"no incremental scope is defined for {contract_table}")
    bronze = bronze_table_of(catalog, contract_table)
    runs, reason = new_bronze_runs(table, bronze, since)
    if runs is None:
        return full(reason)
    if isinstance(source, str):
        ids = new_bronze_rows(bronze, runs, ("event_id",))["event_id"]
        rows = table.scan(selected_fields=("event_id", "event_date")).to_arrow()
        touched = rows.filter(pc.is_in(rows["event_id"], value_set=pc.unique(ids)))
        dates = frozenset(pc.unique(touched["event_date"]).to_pylist())
        return Scope(f"event dates of {len(ids)} new bronze events; {reason}", "event_date", dates)
    if not isinstance(source, CdcSource):
        return typed_scope(source, bronze, runs, reason)
    payloads = new_bronze_rows(bronze, runs, ("payload",))["payload"].to_pylist()
    keys = changed_keys(source, payloads)
    if keys is None:
        return full("a truncate in the new changes touches every key")
    return Scope(f"keys of {len(payloads)} new changes; {reason}", source.keys[0], frozenset(keys))


def typed_scope(
    source: DatabaseSource | LandingSource, bronze: Table, runs: set[str], reason: str
) -> Scope:
    """The silver rows of the first key column's values among the new bronze rows, typed
    as the silver build types them (bronze holds the text that arrived): every stored
    row an upsert of those rows may have replaced, and nothing else."""
    from lakehouse.transforms.typed import typed_columns

    key = source.keys[0]
    if key in source.pii:
        return full(f"the key column {key} is masked in silver: its new values are not known")
    text = new_bronze_rows(bronze, runs, (key,))
    typed = typed_columns(text, {key: source.columns[key]}, zone=source.zone)
    values = frozenset(pc.unique(typed[key]).to_pylist())
    return Scope(f"{key} of {text.num_rows} new bronze rows; {reason}", key, values)


def _appending_runs(bronze: Table, start: int, end: int) -> set[str] | None:
    """Run ids of the bronze appends after ``start`` up to ``end`` (None: not a clean range)."""
    runs: set[str] = set()
    for snapshot in ancestors_of(bronze.metadata.snapshot_by_id(end), bronze.metadata):
        if snapshot.snapshot_id == start:
            return runs
        if _is_replace(snapshot):
            continue  # compaction: no row added or removed
        summary = _properties(snapshot)
        if int(summary.get("deleted-records", "0") or 0):
            return None  # bronze is append-only: anything else, re-check everything
        if int(summary.get("added-records", "0") or 0):
            if RUN_ID_KEY not in summary:
                return None
            runs.add(summary[RUN_ID_KEY])
    return None


def new_bronze_rows(bronze: Table, runs: set[str], fields: tuple[str, ...]) -> pa.Table:
    """The rows those runs appended (each bronze file holds one run: the filter prunes files)."""
    return bronze.scan(row_filter=runs_filter(runs), selected_fields=fields).to_arrow()


def runs_filter(runs: set[str]) -> BooleanExpression:
    return In("_run_id", runs) if runs else AlwaysFalse()


def changed_keys(source: CdcSource, payloads: Iterable[str | None]) -> set | None:
    """The key values the changes touch (one key column: its values), None on a truncate."""
    key = source.keys[0]
    out = set()
    for payload in payloads:
        if payload is None:
            continue
        change = parse_change(payload.encode(), source.columns, source.connector)
        if change is None:
            continue
        if change.op == "t":
            return None
        for image in (change.before, change.after):
            if image and image.get(key) is not None:
                out.add(image[key])
    return out
