"""Replacing the stored rows of some keys: how incremental silver builds write.

pyiceberg binds an ``In`` filter value by value and stops pruning files by it beyond
200 values (``IN_PREDICATE_LIMIT``): past that, a filtered overwrite costs seconds of
expression work and still reads every file it may touch. So a few keys are replaced
with a filtered overwrite (files whose key bounds exclude them stay untouched), and many
keys by reading the stored rows once, dropping those keys in Arrow and overwriting
the whole table, or the one partition that holds them (``within``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    In,
    IsNull,
    Or,
)
from pyiceberg.table import Table

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


def key_mask(rows: pa.Table, columns: tuple[str, ...], keys: Iterable[tuple]) -> pa.Array:
    """True where a row's ``columns`` equal one of ``keys`` (compared as text)."""
    wanted = pa.array(
        [_SEPARATOR.join("" if v is None else str(v) for v in key) for key in keys], pa.string()
    )
    return pc.is_in(_joined(rows, columns), value_set=wanted)


def _joined(rows: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    parts = [pc.fill_null(pc.cast(rows[c], pa.string()), "") for c in columns]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, _SEPARATOR)


def replace_keys(
    table: Table,
    rows: pa.Table,
    columns: tuple[str, ...],
    keys: Iterable[tuple],
    properties: Mapping[str, str],
    within: BooleanExpression | None = None,
) -> None:
    """The stored rows of ``keys`` (inside ``within``) become ``rows``, in one commit."""
    keys = set(keys)
    within = within if within is not None else AlwaysTrue()
    if len(keys) <= FEW_KEYS:
        matching = keys_filter(columns, keys)
        where = matching if isinstance(within, AlwaysTrue) else And(within, matching)
        with transaction(table) as tx:
            tx.overwrite(rows, overwrite_filter=where, snapshot_properties=dict(properties))
        return
    stored = table.scan(row_filter=within).to_arrow()
    schema = table.schema().as_arrow()
    kept = stored.filter(pc.invert(key_mask(stored, columns, keys))) if stored.num_rows else stored
    merged = pa.concat_tables([conform(kept, schema), conform(rows, schema)])
    with transaction(table) as tx:
        tx.overwrite(merged, overwrite_filter=within, snapshot_properties=dict(properties))
