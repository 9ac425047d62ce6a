"""Columns a silver build did not declare: evolved into the table, withheld until classified.

Each build evolves its table first (columns the source started sending, added
metadata-only; breaking changes stop it naming the field) and withholds unclassified
new columns of a PII-bearing source: a column nobody reviewed must not reach silver or
gold raw. The WARN check that names them is ``lakehouse.defs.silver.evolution``.
"""

from __future__ import annotations

import pyarrow as pa
from pyiceberg.table import Table

from lakehouse.tables import evolution


def withhold(rows: pa.Table, columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """``rows`` with ``columns`` nulled, and how many values each held."""
    counts = {}
    for column in columns:
        if column not in rows.column_names:
            continue
        index = rows.schema.get_field_index(column)
        field = rows.schema.field(index)
        counts[column] = rows.num_rows - rows[column].null_count
        rows = rows.set_column(index, field, pa.nulls(rows.num_rows, field.type))
    return rows, counts


def pii_as_text(rows: pa.Table, pii) -> pa.Table:
    """PII columns as Arrow's text of each value (pandas would turn 50 into 50.0)."""
    for column in pii:
        if column in rows.column_names and not pa.types.is_string(rows.schema.field(column).type):
            index = rows.schema.get_field_index(column)
            rows = rows.set_column(index, column, rows[column].cast(pa.string()))
    return rows


def evolve(table: Table, additions: dict, retyped: dict) -> Table:
    """New columns added and reclassified ones retyped: metadata-only commits."""
    return evolution.retype(evolution.apply(table, additions), retyped)


def storable(rows: list[dict], columns: set[str]) -> list[dict]:
    if not columns:
        return rows
    return [
        {k: evolution.to_storable(v) if k in columns else v for k, v in row.items()} for row in rows
    ]
