"""Replacing stored rows: the keys an incremental silver build touched, or all of them.

pyiceberg binds an ``In`` filter value by value and stops pruning files by it beyond
200 values (``IN_PREDICATE_LIMIT``): past that, a filtered overwrite costs seconds of
expression work and still reads every file it may touch. So a few keys are replaced
with a filtered overwrite (files whose key bounds exclude them stay untouched), and many
keys file by file: each data file's key columns are read, and only a file holding one
of the keys is read whole and rewritten without them, one file in memory at a time
(not the table, or the partition ``within``, as one Arrow table). A full rebuild
replaces every row with rows written a part at a time (``replace_all``). Each writes
its data files first and commits them in one transaction, so readers see the old rows
or the new ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThanOrEqual,
    Or,
)
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, TableProperties, Transaction
from pyiceberg.utils.properties import property_as_bool

from lakehouse.tables.commits import conform, transaction

FEW_KEYS = 200  # pyiceberg's IN_PREDICATE_LIMIT
_SEPARATOR = "\x1f"


def keys_filter(columns: tuple[str, ...], keys: Iterable[tuple]) -> BooleanExpression:
    """Rows whose ``columns`` equal one of ``keys``."""
    keys = set(keys)
    if not keys:
        return AlwaysFalse()
    if len(columns) == 1:
        values = {k[0] for k in keys if k[0] is not None}
        present = In(columns[0], values) if values else AlwaysFalse()
        return Or(present, IsNull(columns[0])) if len(values) < len(keys) else present
    expression: BooleanExpression = AlwaysFalse()
    for key in keys:
        one = And(
            *(
                EqualTo(c, v) if v is not None else IsNull(c)
                for c, v in zip(columns, key, strict=True)
            )
        )
        expression = one if isinstance(expression, AlwaysFalse) else Or(expression, one)
    return expression


def values_filter(column: str, values: Iterable) -> BooleanExpression:
    """A filter the files' bounds prune by, cheap to bind, holding every row whose
    ``column`` is one of ``values`` (None: null): the values themselves while few, else
    their range (pyiceberg binds an ``In`` value by value and prunes nothing by it past
    ``FEW_KEYS``). It holds other rows too: callers tell the rows exactly on what it reads."""
    values = set(values)
    present = sorted(v for v in values if v is not None)
    if not present:
        inside: BooleanExpression = AlwaysFalse()
    elif len(present) <= FEW_KEYS:
        inside = In(column, set(present))
    else:
        inside = And(GreaterThanOrEqual(column, present[0]), LessThanOrEqual(column, present[-1]))
    return Or(inside, IsNull(column)) if None in values else inside


def key_mask(rows: pa.Table, columns: tuple[str, ...], keys: Iterable[tuple]) -> pa.Array:
    """True where a row's ``columns`` equal one of ``keys`` (compared as ``key_text``, the
    keys typed as ``rows`` types those columns)."""
    return _key_mask(rows, columns, key_text(typed_keys(keys, columns, rows.schema), columns))


def typed_keys(
    keys: Iterable[tuple] | pa.Table, columns: tuple[str, ...], schema: pa.Schema
) -> pa.Table:
    """``keys`` (tuples of Python values, or a table) as a table of ``columns`` typed as
    ``schema`` types them.

    What makes ``key_text`` one spelling for every caller: Python's text of a value is
    not Arrow's (``2024-01-01 00:00:00+00:00`` against ``2024-01-01 00:00:00.000000Z``,
    ``1.5`` against a ``decimal(10,2)``'s ``1.50``, ``True`` against ``true``), and
    neither is the text of one value in two Arrow types; a key typed as its column is
    spelled as the stored value is.
    """
    types = pa.schema([pa.field(c, schema.field(c).type) for c in columns])
    if isinstance(keys, pa.Table):
        return keys.select(list(columns)).cast(types)
    keys = list(keys)
    return pa.Table.from_arrays(
        [pa.array([key[i] for key in keys], f.type) for i, f in enumerate(types)], schema=types
    )


def _key_mask(rows: pa.Table, columns: tuple[str, ...], texts: pa.Array) -> pa.Array:
    return pc.is_in(key_text(rows, columns), value_set=texts)


_NULL = "\x00"


def key_text(rows: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """Each row's key as one text: equal keys, and only they, have equal texts (a null
    part is not the empty text), whatever chunk or file the row comes from."""
    parts = [
        pc.fill_null(pc.binary_join_element_wise("=", pc.cast(rows[c], pa.string()), ""), _NULL)
        for c in columns
    ]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, _SEPARATOR)


def replace_keys(
    table: Table,
    rows: pa.Table,
    columns: tuple[str, ...],
    keys: Iterable[tuple] | pa.Table,
    properties: Mapping[str, str],
    within: BooleanExpression | None = None,
) -> None:
    """The stored rows of ``keys`` (inside ``within``) become ``rows``, in one commit.

    ``keys``: tuples of values, or a table of the key ``columns``; either way typed as the
    table's key columns (``typed_keys``), so many keys, compared file by file as their
    ``key_text``, match the stored rows whichever way the caller holds them.
    """
    within = within if within is not None else AlwaysTrue()
    keys = typed_keys(keys, columns, table.schema().as_arrow())
    texts = pc.unique(key_text(keys, columns))
    # a key with a null part goes file by file too: pyiceberg's filtered delete keeps or
    # drops rows whose other key parts are null by SQL's three-valued logic, not by key
    if len(texts) <= FEW_KEYS and not any(keys[c].null_count for c in columns):
        matching = keys_filter(columns, zip(*(keys[c].to_pylist() for c in columns), strict=True))
        where = matching if isinstance(within, AlwaysTrue) else And(within, matching)
        with transaction(table) as tx:
            tx.overwrite(rows, overwrite_filter=where, snapshot_properties=dict(properties))
        return
    _replace_by_files(table, rows, columns, texts, properties, within)


def _replace_by_files(
    table: Table,
    rows: pa.Table,
    columns: tuple[str, ...],
    texts: pa.Array,
    properties: Mapping[str, str],
    within: BooleanExpression,
) -> None:
    """Many keys (``texts``: their ``key_text``): rewrite only the data files holding
    one of them, one file at a time."""
    from pyiceberg.io.pyarrow import ArrowScan

    from lakehouse.tables.pyiceberg_internals import dataframe_to_data_files

    schema = table.schema()
    everywhere = isinstance(within, AlwaysTrue)
    # the key columns, and what ``within`` reads, decide which rows of a file go
    tested = (*columns, *([] if everywhere else _referenced(schema, within)))
    probe = ArrowScan(table.metadata, table.io, schema.select(*dict.fromkeys(tested)), AlwaysTrue())
    whole = ArrowScan(table.metadata, table.io, schema, AlwaysTrue())
    removed: list[DataFile] = []
    added: list[DataFile] = []
    with transaction(table) as tx:
        for task in table.scan(row_filter=within).plan_files():
            stored_keys = probe.to_table([task])
            going = _key_mask(stored_keys, columns, texts)
            if not everywhere:
                going = pc.and_(going, _matching(stored_keys, schema, within))
            if not pc.any(going).as_py():
                continue  # none of the keys: the file stays as it is
            removed.append(task.file)
            kept = whole.to_table([task]).filter(pc.invert(going))  # same rows, same order
            if kept.num_rows:
                added += dataframe_to_data_files(tx.table_metadata, kept, table.io)
        if rows.num_rows:
            new = conform(rows, schema.as_arrow())
            added += dataframe_to_data_files(tx.table_metadata, new, table.io)
        with tx.update_snapshot(snapshot_properties=dict(properties)).overwrite() as overwrite:
            for data_file in removed:
                overwrite.delete_data_file(data_file)
            for data_file in added:
                overwrite.append_data_file(data_file)


def _referenced(schema, expression: BooleanExpression) -> list[str]:
    from pyiceberg.expressions.visitors import bind, extract_field_ids

    ids = extract_field_ids(bind(schema, expression, case_sensitive=True))
    return [schema.find_column_name(i) for i in sorted(ids)]


def _matching(rows: pa.Table, schema, expression: BooleanExpression) -> pa.Array:
    """True where a row satisfies ``expression`` (a pyiceberg filter, evaluated in Arrow)."""
    from pyiceberg.expressions.visitors import bind
    from pyiceberg.io.pyarrow import expression_to_pyarrow

    position = pa.array(range(rows.num_rows), pa.int64())
    inside = rows.append_column("__position", position).filter(
        expression_to_pyarrow(bind(schema, expression, case_sensitive=True))
    )
    return pc.is_in(position, value_set=inside["__position"])


def replace_all(table: Table, parts: Iterable[pa.Table], properties: Mapping[str, str]) -> int:
    """Every stored row replaced by the rows of ``parts``, in one commit; the rows written.

    Each part is written as data files as it comes, so memory follows a part, not the
    table (pyiceberg's own overwrite of a ``RecordBatchReader`` submits every file's
    rows to its writer pool at once). The snapshots are ``Transaction.overwrite``'s: a
    delete of every stored file, then an append, both carrying ``properties``.
    """
    from lakehouse.tables.pyiceberg_internals import (
        check_schema_compatible,
        dataframe_to_data_files,
    )

    written = 0
    files: list[DataFile] = []
    with transaction(table) as tx:
        schema = table.schema().as_arrow()
        for part in parts:
            rows = conform(part, schema)
            check_schema_compatible(tx.table_metadata, rows.schema)
            written += rows.num_rows
            if rows.num_rows:
                files += dataframe_to_data_files(tx.table_metadata, rows, table.io)
        tx.delete(AlwaysTrue(), snapshot_properties=dict(properties))
        _append_files(tx, files, properties)
    return written


def _append_files(tx: Transaction, files: Sequence[DataFile], properties: Mapping[str, str]):
    merge = property_as_bool(
        tx.table_metadata.properties,
        TableProperties.MANIFEST_MERGE_ENABLED,
        TableProperties.MANIFEST_MERGE_ENABLED_DEFAULT,
    )
    update = tx.update_snapshot(snapshot_properties=dict(properties))
    with update.merge_append() if merge else update.fast_append() as append:
        for data_file in files:
            append.append_data_file(data_file)
