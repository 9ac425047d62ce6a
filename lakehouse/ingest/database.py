"""Incremental extraction from the OLTP database by watermark, exactly once.

The position committed with each batch is the (watermark, key) of its last row;
the next batch asks for rows strictly after it in (watermark, key) order. Rows that
commit later with an older watermark (a long transaction) are not seen: that is
the watermark method's limit, and why deletes and late rows go through CDC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql
from pyiceberg.catalog import Catalog

from lakehouse.sources import DatabaseSource
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


def rows_after(dsn: str, source: DatabaseSource, position: dict | None, limit: int) -> list[dict]:
    """Rows strictly after ``position`` in (watermark, keys) order, at most ``limit``."""
    order = [source.watermark, *source.keys]
    query = sql.SQL("select {columns} from {table}").format(
        columns=sql.SQL(", ").join(sql.Identifier(c) for c in source.columns),
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
        rows = rows_after(dsn, source, start, limit)
        batch = ExtractBatch(start=start, end=start)
        if not rows:
            return batch
        last = rows[-1]
        batch.end = {
            "watermark": _json_value(last[source.watermark]),
            "key": [_json_value(last[k]) for k in source.keys],
        }
        ingested_at = datetime.now(UTC)
        watermark = batch.end["watermark"]
        records = [
            {
                **{c: _text(row[c]) for c in source.columns},
                "_source": source.name,
                "_watermark": watermark,
                "_ingested_at": ingested_at,
                "_run_id": run_id,
            }
            for row in rows
        ]
        arrow = pa.Table.from_pylist(records, schema=layout.arrow_schema())
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
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
