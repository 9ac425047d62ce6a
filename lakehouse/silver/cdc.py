"""silver.<table> (current state) and silver.<table>_history (SCD2) of a CDC source.

An incremental build reads the changes bronze appended since the last build, reads
the history versions of the keys they touch, and applies the changes on top of them
(``transforms.cdc.apply_changes``): the open version is the key's state (unchanged
TOAST values carry from it), a change already in the history is a duplicate. The
touched keys' rows are then replaced in the current-state and history tables, and
their rows in quarantine: every other key's data files stay as they are.

It rebuilds from the whole changelog when an increment holds a truncate, a replay of
quarantined records (they may be older than what silver applied), or a change older
than what silver holds for its key (``late_change``): a full rebuild is exact, so
anything an increment cannot vouch for goes there.

Values are masked before they are applied: masking is per value and deterministic, so
this equals masking the result, and a carried value is never masked twice.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    And,
    EqualTo,
    GreaterThan,
    In,
)
from pyiceberg.table import Table
from pyiceberg.types import IcebergType, StringType

from lakehouse.declarations.layouts import QUARANTINE, cdc_silver_layouts, iceberg_type
from lakehouse.declarations.sources import CdcSource
from lakehouse.ingest.debezium import UNAVAILABLE
from lakehouse.quality.policy import Contract, Enforced, contract_frame, enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.quality.replay import REPLAY_KEY
from lakehouse.silver.build import ColumnChanges, SilverBuild
from lakehouse.silver.columns import evolve, withhold
from lakehouse.tables import evolution
from lakehouse.tables.commits import ensure_table, transaction
from lakehouse.tables.increments import (
    Plan,
    plan_build,
    read_increment,
    rows_to_read,
    summary_count,
)
from lakehouse.tables.replace import key_mask, replace_keys, values_filter
from lakehouse.transforms.cdc import (
    OrderedChange,
    apply_changes,
    key_of,
    late_change,
    new_keys,
    ordered_changes,
)
from lakehouse.transforms.masking import Masker

CHANGELOG_FIELDS = ("op", "payload", "_kafka_partition", "_kafka_offset")


@dataclass(frozen=True)
class ChangeCounts:
    events_applied: int = 0
    duplicates_skipped: int = 0
    toast_values_carried: int = 0

    def __add__(self, other: ChangeCounts) -> ChangeCounts:
        return ChangeCounts(
            self.events_applied + other.events_applied,
            self.duplicates_skipped + other.duplicates_skipped,
            self.toast_values_carried + other.toast_values_carried,
        )


@dataclass(frozen=True)
class Shaping:
    """How applied rows are stored: the columns beyond the layout, those withheld, and
    the tables' schemas after evolution."""

    undeclared: set[str]
    withheld: list[str]
    current_schema: pa.Schema
    history_schema: pa.Schema


@dataclass
class ArrowWork:
    """What the Arrow engine read: the plan it holds to, the changes, the stored versions."""

    plan: Plan
    changes: list[OrderedChange]
    stored: dict[tuple, list[dict[str, Any]]]


@dataclass
class Applied:
    """An engine's result: current rows of the touched keys (all rows when full), the
    history versions to write (withheld columns nulled), and what it counted."""

    current: pa.Table
    history: Any  # pa.Table; the Spark engine may hand a DataFrame to its own writer
    touched: set[tuple]  # the keys an incremental build replaces
    keys_touched: int
    counts: ChangeCounts
    changes_read: int
    versions_written: int


@dataclass
class CdcBuilt:
    plan: Plan
    current: Table
    history: Table
    quarantine: Table
    applied: ChangeCounts
    enforced: Enforced
    changes_read: int = 0
    keys_touched: int = 0
    rows_quarantined: int = 0
    versions_written: int = 0
    columns: ColumnChanges = field(default_factory=ColumnChanges)


@dataclass
class CdcBuild(SilverBuild):
    """One build of a CDC source's current-state, history and quarantine tables."""

    source: CdcSource
    contract: Contract = field(kw_only=True)

    @property
    def names(self) -> tuple[str, str]:
        return f"silver.{self.source.name}", f"silver.{self.source.name}_history"

    def changes_to_read(self, full: bool = False) -> int:
        """How many changes a build now would read (from snapshot summaries): what an
        engine is chosen by."""
        bronze = self.catalog.load_table(self.source.bronze_table)
        try:
            current = self.catalog.load_table(self.names[0])
        except NoSuchTableError:
            current = None
        return rows_to_read(bronze, plan_build(current, bronze, self.shape, full=full))

    def _run(self, full: bool) -> CdcBuilt:
        source = self.source
        current_layout, history_layout = cdc_silver_layouts(source.columns)
        current_name, history_name = self.names
        bronze = self.catalog.load_table(source.bronze_table)
        current_table = ensure_table(self.catalog, current_name, current_layout)
        history_table = ensure_table(self.catalog, history_name, history_layout)
        plan = plan_build(current_table, bronze, self.shape, full=full)
        if not _partitioned_like(history_table, history_layout):
            history_table = _repartition(history_table, history_layout)
            plan = plan.in_full(f"{history_name} is now partitioned by is_current")
        work = self._read(bronze, history_table, plan)
        plan = work.plan
        # additive source changes evolve silver first; breaking ones stop here, naming it
        additions = self._additions(current_table, work)
        evolved = [
            c
            for c in (*current_table.schema().column_names, *additions)
            if c not in current_layout.schema.column_names
        ]
        # declared types win (a column classified after it evolved), masked PII is text
        retyped = {
            **{c: iceberg_type(t) for c, t in source.columns.items()},
            **{c: StringType() for c in evolved if c in source.pii},
        }
        current_table = evolve(current_table, additions, retyped)
        history_table = evolve(history_table, additions, retyped)
        undeclared = set(current_table.schema().column_names) - set(
            current_layout.schema.column_names
        )
        withheld = source.withheld(undeclared)
        applied = self._apply(
            work,
            Shaping(
                undeclared,
                withheld,
                current_table.schema().as_arrow(),
                history_table.schema().as_arrow(),
            ),
        )
        current_schema = current_table.schema().as_arrow()
        current_rows, withheld_values = withhold(applied.current, withheld)
        enforced = enforce(self.contract, contract_frame(current_rows))
        current_rows = pa.Table.from_pandas(
            enforced.passed, schema=current_schema, preserve_index=False
        )
        new_quarantine = quarantine_table(quarantine_frame(enforced, source.name, self.run_id))
        quarantine = ensure_table(self.catalog, self.contract.quarantine_table, QUARANTINE)
        properties = plan.properties(self.run_id, self.shape)
        built = CdcBuilt(
            plan=plan,
            current=current_table,
            history=history_table,
            quarantine=quarantine,
            applied=applied.counts,
            enforced=enforced,
            changes_read=applied.changes_read,
            keys_touched=applied.keys_touched,
            rows_quarantined=new_quarantine.num_rows,
            versions_written=applied.versions_written,
            columns=ColumnChanges(additions, evolved, withheld, withheld_values),
        )
        if plan.full:
            self._overwrite_history(history_table, applied.history, properties)
            for table, rows in ((quarantine, new_quarantine), (current_table, current_rows)):
                with transaction(table) as tx:
                    tx.overwrite(rows, snapshot_properties=properties)
            return built
        if not plan.appends:
            return built  # nothing new in bronze
        # history and quarantine first, current last: current records how far bronze was
        # applied, and a retry after a lost race finds the others' rows as duplicates.
        # Closed versions silver held stay where they are: only open versions are replaced.
        touched = applied.touched
        open_versions = EqualTo("is_current", True)
        replace_keys(
            history_table, applied.history, source.keys, touched, properties, open_versions
        )
        kept = self._quarantine_outside(quarantine, touched)
        if new_quarantine.num_rows or kept.num_rows != summary_count(quarantine.current_snapshot()):
            with transaction(quarantine) as tx:
                tx.overwrite(
                    pa.concat_tables([kept, new_quarantine]), snapshot_properties=properties
                )
        replace_keys(current_table, current_rows, source.keys, touched, properties)
        return built

    # -- the Arrow engine: the increment in memory, applied in one process ------------

    def _read(self, bronze: Table, history: Table, plan: Plan) -> ArrowWork:
        """The plan's changes and the stored versions they apply on top of."""
        changes = ordered_changes(read_increment(bronze, plan, CHANGELOG_FIELDS), self.source)
        stored: dict[tuple, list[dict[str, Any]]] = {}
        if not plan.full:
            stored, why = self._on_top_of(bronze, history, plan, changes)
            if why:
                plan, stored = plan.in_full(why), {}
                changes = ordered_changes(
                    read_increment(bronze, plan, CHANGELOG_FIELDS), self.source
                )
        return ArrowWork(plan, changes, stored)

    def _additions(self, current: Table, work: ArrowWork) -> dict[str, IcebergType]:
        return evolution.plan(
            self.names[0],
            self.source.columns,
            current.schema(),
            after_images(work.changes),
            skip=UNAVAILABLE,
        )

    def _apply(self, work: ArrowWork, shaping: Shaping) -> Applied:
        return apply_partition(
            self.source, self.masker, work.changes, work.stored, shaping, full=work.plan.full
        )

    def _overwrite_history(self, history: Table, rows: Any, properties: dict[str, str]) -> None:
        with transaction(history) as tx:
            tx.overwrite(rows, snapshot_properties=properties)

    def _on_top_of(
        self, bronze: Table, history: Table, plan: Plan, changes: list[OrderedChange]
    ) -> tuple[dict[tuple, list[dict[str, Any]]], str | None]:
        """The stored versions the changes apply on top of (``changes`` gains the deletes
        and truncates they precede), or why only the whole changelog will do."""
        replayed = replayed_in(plan)
        if replayed:
            return {}, replayed
        stored = self._stored_versions(history, changes)
        late = late_change(changes, self.source.keys, stored, key=self._key)
        if late:  # look again with every version of the keys: it may be a redelivery
            stored = self._stored_versions(history, changes, every=True)
            late = late_change(changes, self.source.keys, stored, key=self._key)
        if late:
            return {}, late
        earlier = self._earlier_removals(bronze, plan, changes, stored)
        if any(c.event.op == "t" for c in earlier):
            return {}, "a truncate newer than a change of this increment"
        changes += earlier
        return stored, None

    def _key(self, change: OrderedChange) -> tuple:
        return stored_key(self.source, self.masker, change)

    def _earlier_removals(
        self, bronze: Table, plan: Plan, changes: list[OrderedChange], stored: dict
    ) -> list[OrderedChange]:
        """Deletes (of keys the changes reopen) and truncates already in bronze, newer than
        those changes: ``new_keys``.

        Bronze files carry LSN bounds in their metrics, so the scan reads only files with
        changes newer than the increment's oldest new key: usually the increment's own.
        """
        fresh, floor = new_keys(changes, self.source.keys, stored, key=self._key)
        if not fresh or floor is None:
            return []
        rows = bronze.scan(
            row_filter=And(In("op", {"d", "t"}), GreaterThan("lsn", floor)),
            selected_fields=CHANGELOG_FIELDS,
            snapshot_id=plan.until.snapshot_id,
        ).to_arrow()
        return [
            c
            for c in ordered_changes(rows, self.source)
            if c.event.op == "t" or self._key(c) in fresh
        ]

    def _stored_versions(
        self, history: Table, changes: list[OrderedChange], every: bool = False
    ) -> dict[tuple, list[dict[str, Any]]]:
        """What silver holds for the keys ``changes`` touch, oldest version first.

        The open version of each key (the ``is_current`` partition, one row per key),
        and for a key without one its last closed version; with ``every``, all of its
        versions. Closed versions are read by key range, which the files' key bounds
        prune when keys grow with time (new rows get new, higher keys).
        """
        keys = self.source.keys
        touched = {self._key(c) for c in changes if c.event.op != "t"}
        if not touched:
            return {}
        stored: dict[tuple, list[dict[str, Any]]] = {}

        def read(is_current: bool, wanted: set[tuple]) -> None:
            if not wanted:
                return
            # pruned by the keys' first column; the rows it holds are matched exactly below
            pruned = values_filter(keys[0], {k[0] for k in wanted})
            rows = history.scan(
                row_filter=And(EqualTo("is_current", is_current), pruned)
            ).to_arrow()
            if rows.num_rows:  # the range holds more than the keys: match them in Arrow first
                rows = rows.filter(key_mask(rows, keys, wanted))
            for row in rows.to_pylist():
                key = tuple(row[k] for k in keys)
                if key in wanted:
                    stored.setdefault(key, []).append(row)

        read(True, touched)
        closed_only = touched - set(stored)
        read(False, touched if every else closed_only)
        for key, versions in stored.items():
            versions.sort(key=lambda v: (v["valid_from"], v["_lsn"] or -1))
            if not every and key in closed_only:
                del versions[:-1]  # the last closed version bounds what may follow
        return stored

    def _quarantine_outside(self, quarantine: Table, touched: set[tuple]) -> pa.Table:
        """Quarantined rows of keys no change touched (quarantine is small: read whole)."""
        rows = quarantine.scan().to_arrow()
        keys = self.source.keys
        loose = _loose(touched)  # once: per row it made this quadratic in keys and rows
        keep = []
        for raw in rows["_raw"].to_pylist():
            row = json.loads(raw) if raw else {}
            keep.append(tuple(_as_key(row.get(k)) for k in keys) not in loose)
        return rows.filter(pa.array(keep, pa.bool_())) if rows.num_rows else rows


def apply_partition(
    source: CdcSource,
    masker: Masker,
    changes: list[OrderedChange],
    stored: dict[tuple, list[dict[str, Any]]],
    shaping: Shaping,
    *,
    full: bool,
) -> Applied:
    """``changes`` applied on top of ``stored``: the rows a build writes for their keys.

    Keys are independent of each other (a truncate aside, which every part of a build
    sees), so the Arrow engine calls this once with every change, and the Spark engine
    once per partition of keys: both write the same rows.
    """
    keys = source.keys
    prepared = [prepare(source, masker, c, shaping.undeclared) for c in changes]
    applied = apply_changes(prepared, keys, stored)
    versions = applied.history
    if not full:  # closed versions silver holds stay where they are: not written again
        unchanged = {
            version_id(v, keys) for held in stored.values() for v in held if not v["is_current"]
        }
        versions = [v for v in versions if version_id(v, keys) not in unchanged]
    history, _ = withhold(
        pa.Table.from_pylist(versions, schema=shaping.history_schema), shaping.withheld
    )
    touched = {key_of(c.event, keys) for c in prepared if c.event.op != "t"}
    return Applied(
        current=pa.Table.from_pylist(applied.current, schema=shaping.current_schema),
        history=history,
        touched=touched,
        keys_touched=len(touched),
        counts=ChangeCounts(
            applied.events_applied, applied.duplicates_skipped, applied.toast_values_carried
        ),
        changes_read=len(changes),
        versions_written=history.num_rows,
    )


def prepare(
    source: CdcSource, masker: Masker, change: OrderedChange, undeclared: set[str]
) -> OrderedChange:
    """The change as silver stores it: PII masked, undeclared values storable."""
    event = change.event

    def image(values: dict[str, Any] | None) -> dict[str, Any] | None:
        if values is None:
            return None
        out = {}
        for column, value in values.items():
            if value is not UNAVAILABLE:
                if column in source.pii:
                    value = masker.mask(value, source.pii[column])
                elif column in undeclared:
                    value = evolution.to_storable(value)
            out[column] = value
        return out

    masked = dataclasses.replace(event, before=image(event.before), after=image(event.after))
    return dataclasses.replace(change, event=masked)


def stored_key(source: CdcSource, masker: Masker, change: OrderedChange) -> tuple:
    """The change's key as silver stores it (a PII key column is masked)."""
    pii = source.pii
    return tuple(
        masker.mask(v, pii[c]) if c in pii else v
        for c, v in zip(source.keys, key_of(change.event, source.keys), strict=True)
    )


def after_images(changes: list[OrderedChange]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(position, row) of every upsert: what schema evolution checks."""
    return (
        (f"LSN {c.event.lsn} (kafka {c.partition}/{c.offset})", c.event.after)
        for c in changes
        if c.event.op in ("c", "u", "r") and c.event.after is not None
    )


def version_id(version: dict[str, Any], keys: tuple[str, ...]) -> tuple:
    return (*(version[k] for k in keys), version["_lsn"], version["_op"], version["valid_from"])


def replayed_in(plan: Plan) -> str | None:
    """Why an increment that replays quarantined records needs the whole changelog: they
    may be older than what silver applied. None when it replays nothing."""
    for snapshot in plan.appends:
        if REPLAY_KEY in _summary(snapshot):
            return (
                f"bronze snapshot {snapshot.snapshot_id} replays quarantined records that may "
                "be older than what silver applied"
            )
    return None


def _summary(snapshot) -> dict[str, str]:
    return dict(snapshot.summary.additional_properties) if snapshot.summary else {}


def _as_key(value: Any) -> str:
    return "" if value is None else str(value)


def _loose(keys: set[tuple]) -> set[tuple]:
    """Keys compared as text: quarantine keeps rows as JSON (numbers, decimals as text)."""
    return {tuple(_as_key(v) for v in key) for key in keys}


def _partitioned_like(table: Table, layout) -> bool:
    fields = [(f.name, str(f.transform)) for f in table.spec().fields]
    return fields == [(f.name, str(f.transform)) for f in layout.partition_spec.fields]


def _repartition(table: Table, layout) -> Table:
    """A history table created before it was partitioned by is_current gets the spec;
    the full rebuild that follows rewrites its rows under it."""
    with table.update_spec() as update:
        for field in table.spec().fields:
            update.remove_field(field.name)
        for field in layout.partition_spec.fields:
            source = layout.schema.find_field(field.source_id).name
            update.add_field(source, field.transform, field.name)
    return table
