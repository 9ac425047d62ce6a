"""Bronze text rows -> typed silver current state (database and landing sources).

Bronze keeps database rows and landing-file values as the text they arrived as;
silver gives each declared column its Iceberg type and keeps the latest version of
every key. Bronze already checked each value against its declared type, so a value
that does not convert here means the declaration changed under existing data: that
stops the asset with the column and value named instead of guessing.
"""

from __future__ import annotations

from datetime import UTC, date, tzinfo
from decimal import Decimal
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField

from lakehouse.declarations.layouts import iceberg_type
from lakehouse.ingest.values import parse_timestamp


class TypingError(ValueError):
    """A bronze value does not convert to its declared silver type."""


def order_columns(order_by: list[str]) -> list[str]:
    """Names under which ``typed_columns`` carries the raw order columns (a watermark column
    can be declared too: it is typed under its own name and ordered by its bronze text)."""
    return [f"__order_{i}" for i in range(len(order_by))]


def typed_columns(
    bronze: pa.Table, columns: dict[str, str], carry: list[str] = (), zone: tzinfo = UTC
) -> pa.Table:
    """Each declared column converted to its type; ``carry`` columns passed on as they
    arrived, under ``order_columns(carry)``. ``zone``: where naive timestamps are wall
    time (a landing source's ``dialect.time_zone``); every timestamp is stored as UTC."""
    schema = pa.schema([pa.field(c, arrow_type(t)) for c, t in columns.items()])
    if bronze.num_rows == 0:
        out = schema.empty_table()
    else:
        out = pa.table(
            {c: _convert(bronze[c], c, t, schema.field(c).type, zone) for c, t in columns.items()},
            schema=schema,
        )
    for name, column in zip(order_columns(list(carry)), carry, strict=True):
        out = out.append_column(pa.field(name, bronze.schema.field(column).type), bronze[column])
    return out


def latest_per_key(rows: pa.Table, keys: tuple[str, ...], order_by: list[str]) -> pa.Table:
    """The last row of each key by ``order_by``, in that order (``order_by`` columns kept).

    Rows equal in ``order_by`` keep the order they came in (a stable sort), so the later
    of two such rows wins. The order and the winners are found on the key and order
    columns; the whole rows are taken once.
    """
    import numpy as np

    if rows.num_rows == 0:
        return rows
    ordered = pc.sort_indices(rows.select(order_by), [(c, "ascending") for c in order_by])
    positions = pa.array(np.arange(rows.num_rows, dtype=np.int64))
    narrow = rows.select(list(keys)).take(ordered).append_column("_i", positions)
    # the last occurrence of each key in that order wins
    latest = narrow.group_by(list(keys), use_threads=False).aggregate([("_i", "max")])
    keep = pc.sort_indices(latest["_i_max"])
    return rows.take(ordered.take(latest["_i_max"].take(keep)))


def arrow_type(declared: str) -> pa.DataType:
    field = NestedField(1, "x", iceberg_type(declared), required=False)
    return Schema(field).as_arrow().field("x").type


def _convert(
    values: pa.ChunkedArray, column: str, declared: str, target: pa.DataType, zone: tzinfo
):
    """Vectorised cast where Arrow parses the text itself, per value where it cannot."""
    text = pc.if_else(pc.equal(pc.utf8_trim_whitespace(values), ""), None, values)
    if pa.types.is_string(target):
        return text
    if not pa.types.is_timestamp(target):
        try:
            return pc.cast(pc.utf8_trim_whitespace(text), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    kind = declared.split("(")[0].strip()
    convert = partial(parse_timestamp, zone=zone) if kind == "timestamp" else _PARSERS[kind]
    out = []
    for raw in text.to_pylist():
        try:
            out.append(None if raw is None else convert(raw.strip()))
        except (ValueError, ArithmeticError) as exc:
            raise TypingError(f"column {column!r}: {raw!r} is not a {declared} ({exc})") from exc
    return pa.array(out, type=target)


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError("not a boolean")
    return lowered in ("true", "1")


_PARSERS = {
    "int": int,
    "long": int,
    "double": float,
    "boolean": _boolean,
    "date": date.fromisoformat,
    "decimal": Decimal,
}
