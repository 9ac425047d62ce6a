"""Debezium PostgreSQL change events: envelope parsing and value decoding.

Follows the connector's documented "Data type mappings": NUMERIC/DECIMAL as
base64 big-endian two's-complement bytes with ``scale`` in the field schema
(``org.apache.kafka.connect.data.Decimal``), DATE as days since the epoch,
TIMESTAMP as epoch milli/micro/nanoseconds, TIMESTAMPTZ as an ISO string, JSON as
a string. Unchanged TOASTed columns arrive as ``__debezium_unavailable_value``;
the placeholder is kept as :data:`UNAVAILABLE` so that the silver layer carries
the previous value forward instead of storing it. Without the ``schema`` wrapper
the table's declared types (sources.yml) drive the same decoding.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lakehouse.ingest.records import RecordRejected, decode_json

TOAST_PLACEHOLDER = "__debezium_unavailable_value"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OPS = {"c", "u", "d", "r", "t"}


class _Unavailable:
    """An unchanged TOAST column: the value did not change and was not sent."""

    def __repr__(self) -> str:
        return "UNAVAILABLE"

    def __reduce__(self) -> str:
        # one instance, also across pickling (Spark's Python workers compare by identity)
        return "UNAVAILABLE"


UNAVAILABLE = _Unavailable()


@dataclass(frozen=True)
class ChangeEvent:
    op: str  # c, u, d, r (snapshot read), t (truncate)
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    lsn: int | None
    ts_ms: int | None  # when the change happened in the source database
    tx_id: int | None


def parse_change(value: bytes | None, declared: dict[str, str]) -> ChangeEvent | None:
    """A decoded change, or None for a tombstone (the null value after a delete)."""
    if value is None:
        return None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected("utf8", f"value is not valid UTF-8: {exc}") from None
    document = decode_json(text)
    if not isinstance(document, dict):
        raise RecordRejected("envelope", "value is not a JSON object")
    schema = None
    if "payload" in document and "schema" in document:
        schema, document = document["schema"], document["payload"]
        if document is None:
            return None
    op = document.get("op")
    if op not in OPS:
        raise RecordRejected("envelope", f"missing or unknown op {op!r} (expected c/u/d/r/t)")
    source = document.get("source") or {}
    field_schemas = _row_field_schemas(schema)
    before = _decode_row(document.get("before"), field_schemas, declared, "before")
    after = _decode_row(document.get("after"), field_schemas, declared, "after")
    if op in ("c", "u", "r") and after is None:
        raise RecordRejected("envelope", f"op {op!r} without an 'after' image")
    if op == "d" and before is None:
        raise RecordRejected("envelope", "op 'd' without a 'before' image (REPLICA IDENTITY?)")
    return ChangeEvent(
        op=op,
        before=before,
        after=after,
        lsn=_int(source.get("lsn")),
        ts_ms=_int(source.get("ts_ms", document.get("ts_ms"))),
        tx_id=_int(source.get("txId")),
    )


def _row_field_schemas(schema: dict | None) -> dict[str, dict]:
    if not schema:
        return {}
    for envelope_field in schema.get("fields", []):
        if envelope_field.get("field") in ("after", "before") and envelope_field.get("fields"):
            return {f["field"]: f for f in envelope_field["fields"]}
    return {}


def _decode_row(row, field_schemas, declared, which) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise RecordRejected("envelope", f"'{which}' is not an object")
    decoded = {}
    for column, raw in row.items():
        try:
            decoded[column] = decode_value(raw, field_schemas.get(column), declared.get(column))
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RecordRejected(
                "decode", f"{which}.{column}: cannot decode {raw!r}: {exc}"
            ) from None
    return decoded


def decode_value(raw: Any, field_schema: dict | None, declared: str | None) -> Any:
    """One column value, by its Debezium schema if present, else by the declared type."""
    if raw is None:
        return None
    if raw == TOAST_PLACEHOLDER:
        return UNAVAILABLE
    name = (field_schema or {}).get("name")
    params = (field_schema or {}).get("parameters") or {}
    if name == "org.apache.kafka.connect.data.Decimal":
        return _decimal(raw, int(params.get("scale", 0)))
    if name == "io.debezium.time.Date":
        return date(1970, 1, 1) + timedelta(days=int(raw))
    if name == "io.debezium.time.Timestamp":
        return EPOCH + timedelta(milliseconds=int(raw))
    if name == "io.debezium.time.MicroTimestamp":
        return EPOCH + timedelta(microseconds=int(raw))
    if name == "io.debezium.time.NanoTimestamp":
        return EPOCH + timedelta(microseconds=int(raw) // 1000)
    if name == "io.debezium.time.ZonedTimestamp":
        return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    if field_schema is not None or declared is None:
        return raw  # io.debezium.data.Json and plain types arrive as themselves
    return _by_declared(raw, declared.strip())


def _by_declared(raw: Any, declared: str) -> Any:
    if declared.startswith("decimal("):
        scale = int(declared[len("decimal(") : -1].split(",")[1])
        if isinstance(raw, str) and "." not in raw and _base64(raw):
            return _decimal(raw, scale)  # decimal.handling.mode=precise, the default
        return Decimal(str(raw)).quantize(Decimal(1).scaleb(-scale))  # string/double modes
    if declared == "date":
        return (
            date(1970, 1, 1) + timedelta(days=raw)
            if isinstance(raw, int)
            else date.fromisoformat(raw)
        )
    if declared in ("timestamp", "timestamptz"):
        if isinstance(raw, int):  # the PostgreSQL connector's default: MicroTimestamp
            return EPOCH + timedelta(microseconds=raw)
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return raw


def _decimal(encoded: str, scale: int) -> Decimal:
    unscaled = int.from_bytes(base64.b64decode(encoded, validate=True), "big", signed=True)
    return Decimal(unscaled).scaleb(-scale)


def _base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
