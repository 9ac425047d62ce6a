"""Incremental silver: which bronze rows a build must read, and when it must read them all.

A silver table is a function of its bronze table, and bronze only appends. Every silver
commit records the bronze snapshot it was computed up to (``lakehouse.bronze-snapshot-id``)
and the shape it was computed with (``lakehouse.silver-shape``: a digest per thing that
decides silver's contents, such as the contract, the PII policy, the keys, the declared
and classified columns, the code's logic version). The next build reads only the data
files bronze appended after that snapshot, up to the bronze snapshot current when it
started (pinned, and recorded in turn).

A full rebuild happens only when it must, and the plan says why: the first build, a silver
snapshot without a recorded bronze snapshot (written outside a materialization), a
changed shape, a recorded bronze snapshot that is no longer an ancestor (expired, or
bronze was rolled back), a bronze snapshot in the range that is not an append (a delete
or overwrite: bronze is append-only, so something unexpected happened), or a run that
asks for it (config ``full: true``). Compaction (``replace``) adds no rows and is skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.table import BaseScan, Table
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of

from lakehouse.tables.commits import RUN_ID_KEY, last_write
from lakehouse.tables.rebuilds import BUILT_FROM_KEY

SHAPE_KEY = "lakehouse.silver-shape"
MODE_KEY = "lakehouse.silver-mode"
FULL = "full"
INCREMENTAL = "incremental"
# data files, and rows, read per chunk of an increment: memory follows a chunk, not the
# increment (a chunk holds at least one file, however many rows it has)
FILES_PER_CHUNK = 16
ROWS_PER_CHUNK = 250_000
ALWAYS_TRUE = AlwaysTrue()


def shape(parts: Mapping[str, Any]) -> dict[str, str]:
    """A short digest of each part that shapes a silver table (JSON-serializable values)."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
            :16
        ]
        for name, value in sorted(parts.items())
    }


@dataclass(frozen=True)
class Plan:
    """What a silver build reads: the bronze appends after ``since`` up to ``until``, or all."""

    mode: str
    reason: str
    until: Snapshot | None  # the bronze snapshot pinned at the start of the build
    since: int | None = None  # the bronze snapshot the last build recorded
    appends: tuple[Snapshot, ...] = field(default=())

    @property
    def full(self) -> bool:
        return self.mode == FULL

    @property
    def until_id(self) -> str:
        return str(self.until.snapshot_id) if self.until else ""

    def in_full(self, reason: str) -> Plan:
        """The same build, from all of bronze up to the same pinned snapshot."""
        return Plan(FULL, reason, self.until)

    def properties(self, run_id: str, shape: Mapping[str, str]) -> dict[str, str]:
        """The snapshot summary every silver commit of this build carries."""
        return {
            RUN_ID_KEY: run_id,
            BUILT_FROM_KEY: self.until_id,
            SHAPE_KEY: json.dumps(dict(shape), sort_keys=True),
            MODE_KEY: self.mode,
        }

    def metadata(self) -> dict[str, Any]:
        """What the materialization says about the mode (plotted and shown by the UI)."""
        return {
            "lakehouse/silver_mode": self.mode,
            "lakehouse/silver_mode_reason": self.reason,
            "bronze_snapshot_id": self.until_id,
            "bronze_snapshots_read": len(self.appends) if not self.full else 0,
        }


def _summary(snapshot: Snapshot | None) -> dict[str, str]:
    if snapshot is None or snapshot.summary is None:
        return {}
    return dict(snapshot.summary.additional_properties)


def plan_build(
    silver: Table | None, bronze: Table, shape: Mapping[str, str], *, full: bool = False
) -> Plan:
    """Decide between an incremental build and a full rebuild of ``silver`` from ``bronze``."""
    until = bronze.current_snapshot()
    # a compaction (replace) on top of silver's last build changes no row: read past it
    current = last_write(silver) if silver is not None else None
    if full:
        return Plan(FULL, "asked for (config full: true)", until)
    if current is None:
        return Plan(FULL, "first build", until)
    recorded = _summary(current)
    if not recorded.get(BUILT_FROM_KEY):
        return Plan(FULL, "the table was written outside a materialization", until)
    before = json.loads(recorded.get(SHAPE_KEY) or "{}")
    changed = sorted(k for k in {*before, *shape} if before.get(k) != shape.get(k))
    if changed:
        return Plan(FULL, f"what shapes the table changed: {', '.join(changed)}", until)
    since = int(recorded[BUILT_FROM_KEY])
    if until is None or until.snapshot_id == since:
        return Plan(INCREMENTAL, "nothing new in bronze", until, since)
    appends = []
    for snapshot in ancestors_of(until, bronze.metadata):
        if snapshot.snapshot_id == since:
            break
        operation = snapshot.summary.operation if snapshot.summary else None
        if operation == Operation.APPEND:
            appends.append(snapshot)
        elif operation != Operation.REPLACE:  # compaction adds no rows: nothing to read
            what = f"bronze snapshot {snapshot.snapshot_id} is a {operation}, not an append"
            return Plan(FULL, what, until)
    else:
        return Plan(
            FULL,
            f"bronze snapshot {since} of the last build is expired or no longer an ancestor",
            until,
        )
    return Plan(
        INCREMENTAL,
        f"{len(appends)} bronze append(s) since snapshot {since}",
        until,
        since,
        tuple(reversed(appends)),
    )


def rows_to_read(bronze: Table, plan: Plan) -> int:
    """How many bronze rows the plan reads, from the snapshots' summaries (no file read)."""
    if plan.until is None:
        return 0
    if plan.full:
        return summary_count(plan.until)
    return sum(summary_count(s, "added-records") for s in plan.appends)


def summary_count(snapshot: Snapshot | None, key: str = "total-records") -> int:
    """A count the snapshot's summary holds (0 when absent): no file is read."""
    summary = snapshot.summary if snapshot is not None else None
    value = summary[key] if summary is not None and key in summary else None
    return int(value) if value is not None else 0


def increment_batches(
    bronze: Table,
    plan: Plan,
    selected_fields: tuple[str, ...] = ("*",),
    row_filter: BooleanExpression = ALWAYS_TRUE,
    rows_per_chunk: int = ROWS_PER_CHUNK,
) -> Iterator[pa.Table]:
    """The rows the plan reads, a chunk of data files at a time (every row when full)."""
    if plan.until is None:
        return
    if plan.full:
        scan = bronze.scan(
            row_filter=row_filter,
            selected_fields=selected_fields,
            snapshot_id=plan.until.snapshot_id,
        )
    elif not plan.appends:
        return
    else:
        scan = bronze.incremental_append_scan(
            row_filter=row_filter,
            selected_fields=selected_fields,
            from_snapshot_id_exclusive=plan.since,
            to_snapshot_id_inclusive=plan.until.snapshot_id,
        )
    yield from scan_chunks(bronze, scan, rows_per_chunk)


def scan_chunks(
    table: Table, scan: BaseScan, rows_per_chunk: int, tasks: list | None = None
) -> Iterator[pa.Table]:
    """``scan``'s rows (of ``tasks``, when the caller planned them), a chunk of data files
    at a time. pyiceberg's own batch reader submits every file to its thread pool at once
    and keeps each file's batches until they are read: a slow reader holds the table."""
    planned = list(scan.plan_files()) if tasks is None else tasks
    for chunk_tasks in _chunks(planned, rows_per_chunk):
        chunk = read_tasks(table, scan, chunk_tasks)
        if chunk.num_rows:
            yield chunk


def read_tasks(table: Table, scan: BaseScan, tasks: list) -> pa.Table:
    """The rows of planned ``tasks`` of ``scan``, as one table (its schema when empty)."""
    # pyiceberg's Arrow I/O imports pandas (~1 s): paid by a build, not by the code location
    from pyiceberg.io.pyarrow import ArrowScan

    reader = ArrowScan(
        table.metadata, table.io, scan.projection(), scan.row_filter, scan.case_sensitive
    )
    return reader.to_table(tasks)


def _chunks(tasks: list, rows_per_chunk: int) -> Iterator[list]:
    """Consecutive tasks, at most ``FILES_PER_CHUNK`` files and ``rows_per_chunk`` rows."""
    chunk: list = []
    rows = 0
    for task in tasks:
        full = len(chunk) == FILES_PER_CHUNK or rows + task.file.record_count > rows_per_chunk
        if chunk and full:
            yield chunk
            chunk, rows = [], 0
        chunk.append(task)
        rows += task.file.record_count
    if chunk:
        yield chunk


def read_increment(
    bronze: Table,
    plan: Plan,
    selected_fields: tuple[str, ...] = ("*",),
    row_filter: BooleanExpression = ALWAYS_TRUE,
) -> pa.Table:
    """The plan's rows as one table (the increment's size, not bronze's, on an incremental run)."""
    chunks = list(increment_batches(bronze, plan, selected_fields, row_filter))
    if chunks:
        return pa.concat_tables(chunks, promote_options="default")
    scan = bronze.scan(selected_fields=selected_fields)
    return scan.projection().as_arrow().empty_table()
