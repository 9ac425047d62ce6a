"""Incremental extraction from the OLTP database by watermark, exactly once.

The position committed with each batch is the (watermark, key) of its last row;
the next batch asks for rows strictly after it in (watermark, key) order. Rows that
commit later with an older watermark (a long transaction) are not seen: that is
the watermark method's limit, and why deletes and late rows go through CDC.

The table's shape is checked against sources.yml on every batch, from PostgreSQL's
catalog: a declared column that is gone, or whose type no longer fits the declared
one (a narrowing: numeric(12,4) for decimal(10,2), text for int), stops the source
naming the column before anything is read. A column the table gained lands in bronze
as text like every other (added in the same run, metadata only), its PostgreSQL type
noted for silver.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import psycopg
import pyarrow as pa
from psycopg import sql
from pyiceberg.catalog import Catalog

from lakehouse.declarations.sources import DatabaseSource
from lakehouse.ingest.values import DECIMAL
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    append_with_position,
    committed_position,
    ensure_table,
    with_commit_retries,
)


@dataclass
class ExtractBatch:
    start: dict[str, Any] | None
    end: dict[str, Any] | None
    landed: int = 0
    snapshot_id: int | None = None


def committed_watermark(catalog: Catalog, source: DatabaseSource) -> dict[str, Any] | None:
    table = ensure_table(catalog, source.bronze_table, source.layout)
    return committed_position(table, source.name)


class PgColumn(NamedTuple):
    data_type: str
    precision: int | None
    scale: int | None


# digits each integer type can hold, for a decimal(p,s) declaration
_INTEGER_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}
_FITS = {
    "int": {"smallint", "integer"},
    "long": {"smallint", "integer", "bigint"},
    "double": {"smallint", "integer", "real", "double precision"},
    "boolean": {"boolean"},
    "date": {"date"},
    "timestamp": {"timestamp without time zone", "timestamp with time zone"},
}


def table_columns(dsn: str, source: DatabaseSource) -> dict[str, PgColumn]:
    """The table's columns in PostgreSQL's catalog, in table order."""
    schema, _, table = source.table.rpartition(".")
    query = (
        "select column_name, data_type, numeric_precision, numeric_scale "
        "from information_schema.columns where table_schema = %s and table_name = %s "
        "order by ordinal_position"
    )
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        found = conn.execute(query, [schema or "public", table]).fetchall()
    if not found:
        raise evolution.SchemaBreak(f"source {source.name!r}: table {source.table} not found")
    return {name: PgColumn(kind, precision, scale) for name, kind, precision, scale in found}


def check_columns(source: DatabaseSource, actual: dict[str, PgColumn]) -> dict[str, str]:
    """New columns (name -> declared-vocabulary type); SchemaBreak for a breaking change."""
    for column, declared in source.columns.items():
        if column not in actual:
            raise evolution.SchemaBreak(
                f"source {source.name!r}: declared column {column!r} is missing from "
                f"{source.table} (dropped or renamed?). Nothing was read; remove it from "
                "sources.yml if the drop is intended, then run again."
            )
        if not _fits(declared.strip(), actual[column]):
            got = actual[column]
            shown = got.data_type + (
                f"({got.precision},{got.scale})" if got.data_type == "numeric" else ""
            )
            raise evolution.SchemaBreak(
                f"source {source.name!r}: column {column!r} of {source.table} is now {shown}, "
                f"which does not fit the declared {declared} (type narrowed or changed). "
                "Nothing was read; declare the new type in sources.yml or fix the table."
            )
    return {c: _declared_type(t) for c, t in actual.items() if c not in source.columns}


def _fits(declared: str, column: PgColumn) -> bool:
    if declared == "string":
        return True  # every value has a text form
    if match := DECIMAL.match(declared):
        precision, scale = int(match[1]), int(match[2])
        if column.data_type in _INTEGER_DIGITS:
            return _INTEGER_DIGITS[column.data_type] <= precision - scale
        return (
            column.data_type == "numeric"
            and column.precision is not None
            and (column.scale or 0) <= scale
            and column.precision - (column.scale or 0) <= precision - scale
        )
    return column.data_type in _FITS.get(declared, set())


def _declared_type(column: PgColumn) -> str:
    """The sources.yml type a new column would be declared with (string if none fits)."""
    if column.data_type == "numeric" and column.precision is not None:
        return f"decimal({column.precision},{column.scale or 0})"
    simple = {
        "smallint": "int",
        "integer": "int",
        "bigint": "long",
        "real": "double",
        "double precision": "double",
        "boolean": "boolean",
        "date": "date",
        "timestamp without time zone": "timestamp",
        "timestamp with time zone": "timestamp",
    }
    return simple.get(column.data_type, "string")


def rows_after(
    dsn: str,
    source: DatabaseSource,
    position: dict | None,
    limit: int,
    columns: list[str] | None = None,
) -> list[dict]:
    """Rows strictly after ``position`` in (watermark, keys) order, at most ``limit``."""
    order = [source.watermark, *source.keys]
    query = sql.SQL("select {columns} from {table}").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns or source.columns),
        table=sql.Identifier(*source.table.split(".")),
    )
    params: list[Any] = []
    if position is not None:
        query += sql.SQL(" where ({order}) > ({marks})").format(
            order=sql.SQL(", ").join(sql.Identifier(c) for c in order),
            marks=sql.SQL(", ").join(sql.Placeholder() for _ in order),
        )
        params = [position["watermark"], *position["key"]]
    query += sql.SQL(" order by {order} limit {limit}").format(
        order=sql.SQL(", ").join(sql.Identifier(c) for c in order), limit=sql.Literal(limit)
    )
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        cursor = conn.execute(query, params)
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def extract_batch(
    catalog: Catalog, dsn: str, source: DatabaseSource, run_id: str, limit: int = 100_000
) -> ExtractBatch:
    layout = source.layout

    def attempt() -> ExtractBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        start = committed_position(bronze, source.name)
        new_columns = check_columns(source, table_columns(dsn, source))
        columns = [*source.columns, *new_columns]
        rows = rows_after(dsn, source, start, limit, columns)
        batch = ExtractBatch(start=start, end=start)
        if not rows:
            return batch
        # new columns, and declared ones bronze predates, join bronze (metadata only)
        bronze = evolution.add_text_columns(bronze, {c: new_columns.get(c) for c in columns})
        last = rows[-1]
        batch.end = {
            "watermark": _json_value(last[source.watermark]),
            "key": [_json_value(last[k]) for k in source.keys],
        }
        ingested_at = datetime.now(UTC)
        watermark = batch.end["watermark"]
        records = [
            {
                **{c: _text(row[c]) for c in columns},
                "_source": source.name,
                "_watermark": watermark,
                "_ingested_at": ingested_at,
                "_run_id": run_id,
            }
            for row in rows
        ]
        arrow = pa.Table.from_pylist(records, schema=bronze.schema().as_arrow())
        batch.snapshot_id = append_with_position(bronze, arrow, source.name, batch.end, run_id)
        batch.landed = len(rows)
        return batch

    return with_commit_retries(attempt)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):  # json / jsonb / arrays: their JSON text
        return json.dumps(value, default=str, sort_keys=True)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
