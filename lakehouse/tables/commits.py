"""Exactly-once commits: the source position travels in the same Iceberg snapshot as the data.

This is the protocol of the Iceberg Kafka Connect and Flink sinks. A batch's
position (Kafka next-offsets per partition, the landing files it read) is written
into the summary of the snapshot that adds its rows. Readers recover the position
by walking the snapshot ancestry, so a run that dies before its commit leaves
nothing behind and the next run simply redoes the batch; a run that races another
loses the optimistic-concurrency check, re-reads the position and retries.
"""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.table.snapshots import Operation, Snapshot, ancestors_of
from pyiceberg.utils.properties import property_as_bool

from lakehouse.declarations.layouts import TableLayout

POSITION_PREFIX = "lakehouse.position."
RUN_ID_KEY = "lakehouse.run-id"
PARTITION_KEY = "lakehouse.partition-key"

T = TypeVar("T")

TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # pyiceberg would otherwise re-apply a conflicting append on top of the winner's
    # snapshot, and two runs that read the same offsets would both land. Our own
    # retry (with_commit_retries) re-reads the position instead.
    "commit.retry.num-retries": "0",
}
# The layout-declared property keys the lakehouse last set on a table, so a key a
# declaration drops (a source's snapshot_retention_hours) is removed again.
DECLARED_KEY = "lakehouse.declared-properties"


def ensure_table(catalog: Catalog, identifier: str, layout: TableLayout) -> Table:
    """Load the table, creating it (and its namespace) on first use, with the
    properties its layout declares (``_with_properties``)."""
    namespace = identifier.split(".")[0]
    catalog.create_namespace_if_not_exists(namespace)
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        pass
    else:
        return _with_properties(catalog, table, layout)
    return catalog.create_table_if_not_exists(
        identifier,
        schema=layout.schema,
        partition_spec=layout.partition_spec,
        properties={**TABLE_PROPERTIES, **_declared(layout)},
    )


def _declared(layout: TableLayout) -> dict[str, str]:
    """The layout's properties and, if it has any, the record of their keys."""
    declared = dict(layout.properties)
    return {**declared, DECLARED_KEY: ",".join(sorted(declared))} if declared else {}


def _with_properties(catalog: Catalog, table: Table, layout: TableLayout) -> Table:
    """``table`` with the properties its layout declares, changed only where they differ.

    A table created elsewhere (Spark DDL, an operator) must not let pyiceberg re-apply
    a conflicting append behind our position check, and a changed declaration reaches
    the existing table: a key set or changed is set, a key no longer declared is
    removed. Properties the lakehouse never declared (an operator's) are left alone.
    Runs, sensors and checks all call this when they load a table, and may race to
    make the same change: a lost race re-reads the table and looks again.
    """
    declared = dict(layout.properties)
    wanted = {**_declared(layout), "commit.retry.num-retries": "0"}
    loaded = [table]

    def attempt() -> Table:
        current = loaded.pop() if loaded else catalog.load_table(table.name())
        # a table that had declarations keeps the record, empty once all are dropped
        want = {DECLARED_KEY: "", **wanted} if DECLARED_KEY in current.properties else wanted
        earlier = current.properties.get(DECLARED_KEY, "").split(",")
        dropped = [k for k in earlier if k and k not in declared and k in current.properties]
        stale = {k: v for k, v in want.items() if current.properties.get(k) != v}
        if not stale and not dropped:
            return current
        with current.transaction() as tx:
            if dropped:
                tx.remove_properties(*dropped)
            if stale:
                tx.set_properties(stale)
        return catalog.load_table(table.name())

    return with_commit_retries(attempt)


def transaction(table: Table) -> Transaction:
    """``table.transaction()``, for every data commit of ours.

    It derives the staged metadata once per change instead of on every read
    (``pyiceberg_internals.MemoizedTransaction``): a position commit with 500 snapshots
    of history takes 39 ms instead of 314 ms (``bench.commit_cost``). Imported here:
    its module imports pyiceberg's Arrow I/O (and pandas with it, ~1 s), which the code
    location, importing this module for its constants, does not need when it loads.
    """
    from lakehouse.tables.pyiceberg_internals import MemoizedTransaction

    return MemoizedTransaction(table)


@contextlib.contextmanager
def quiet_empty_deletes() -> Iterator[None]:
    """Silence pyiceberg's warning when an overwrite's filter matches no stored row.

    An incremental build replaces the rows of the keys or days it touched; where none
    were stored yet (a new key, a new day) there is nothing to delete, which is expected.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Delete operation did not match any records")
        yield


def last_write(table: Table) -> Snapshot | None:
    """The newest snapshot of the current ancestry that is not a ``replace``.

    Compaction commits ``replace`` snapshots (same rows, other files) that carry none of
    the build state a write records (the bronze snapshot silver was built from, its
    shape, the run): whoever reads that state off "the current snapshot" reads it here,
    so a compaction never makes a build look written outside a materialization.
    """
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        if snapshot.summary is None or snapshot.summary.operation != Operation.REPLACE:
            return snapshot
    return None


def position_key(source: str) -> str:
    return f"{POSITION_PREFIX}{source}"


def committed_position(table: Table, source: str) -> Any | None:
    """The position of the newest snapshot in the current ancestry that carries one.

    Maintenance commits (compaction, expiry) carry no position, hence the walk.
    """
    key = position_key(source)
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        value = snapshot.summary[key] if snapshot.summary else None
        if value is not None:
            return json.loads(value)
    return None


def committed_positions(table: Table, source: str) -> Iterable[Any]:
    """Every position committed for ``source`` in the current ancestry, newest first."""
    key = position_key(source)
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        value = snapshot.summary[key] if snapshot.summary else None
        if value is not None:
            yield json.loads(value)


def append_with_position(
    table: Table,
    rows: pa.Table,
    source: str,
    position: Any,
    run_id: str,
    partition_key: str | None = None,
) -> int | None:
    """Append ``rows`` and record ``position`` in the same snapshot; return its id."""
    properties = {position_key(source): json.dumps(position, sort_keys=True), RUN_ID_KEY: run_id}
    if partition_key:
        properties[PARTITION_KEY] = partition_key
    with transaction(table) as tx:
        tx.append(conform(rows, table.schema().as_arrow()), snapshot_properties=properties)
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def append_files_with_position(
    table: Table,
    data_files: list[DataFile],
    source: str,
    position: Any,
    run_id: str,
    partition_key: str | None = None,
) -> int | None:
    """Add already written ``data_files`` and record ``position`` in the same snapshot.

    The files were written against ``table``'s metadata as loaded (see
    ``lakehouse.tables.data_files``); if another commit won meanwhile this raises
    ``CommitFailedException`` like ``append_with_position``, and the files stay
    unreferenced. With no files it still commits the position (a batch of rejects).
    """
    properties = {position_key(source): json.dumps(position, sort_keys=True), RUN_ID_KEY: run_id}
    if partition_key:
        properties[PARTITION_KEY] = partition_key
    merge = property_as_bool(
        table.metadata.properties,
        TableProperties.MANIFEST_MERGE_ENABLED,
        TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
    )
    with transaction(table) as tx:
        update = tx.update_snapshot(snapshot_properties=properties)
        with update.merge_append() if merge else update.fast_append() as append:
            for data_file in data_files:
                append.append_data_file(data_file)
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """``rows`` with the table's columns, by name and in its order; missing ones null.

    A column the table does not have is an error naming it: schema changes are
    applied deliberately (``update_schema``), never by accident of position.
    """
    unknown = [name for name in rows.column_names if schema.get_field_index(name) < 0]
    if unknown:
        raise ValueError(f"columns {unknown} are not in the table schema {schema.names}")
    columns = [
        rows[field.name].cast(field.type)
        if field.name in rows.column_names
        else pa.nulls(rows.num_rows, field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def with_commit_retries(attempt: Callable[[], T], retries: int = 8) -> T:
    """Run ``attempt`` (load, read position, write) again when a concurrent commit won.

    ``attempt`` must reload the table and re-read the position each time: the point
    of retrying is to see what the winner committed.
    """
    for n in range(retries + 1):
        try:
            return attempt()
        except CommitFailedException:
            if n == retries:
                raise
            time.sleep(min(0.05 * 2**n, 2.0))
    raise AssertionError("unreachable")
