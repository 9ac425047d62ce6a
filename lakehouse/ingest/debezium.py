"""Debezium PostgreSQL change events: envelope parsing and value decoding.

Values follow the connector's documented "Data type mappings" in every mode of its
``decimal.handling.mode``, ``time.precision.mode``, ``binary.handling.mode`` and
``interval.handling.mode``: decoded by the encoding the event's ``schema`` wrapper
names (``lakehouse.ingest.debezium_values``), or, without the wrapper, by the one the
source's declared types and connector modes imply; then stored as the declared type
wherever that is lossless (``lakehouse.ingest.coerce``). A documented encoding is
never a schema break; a value its column cannot hold still is.

Unchanged TOASTed columns arrive as the connector's placeholder; it is kept as
:data:`UNAVAILABLE` so that the silver layer carries the previous value forward
instead of storing it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from lakehouse.declarations.sources import ConnectorModes
from lakehouse.ingest import debezium_values
from lakehouse.ingest.coerce import to_declared
from lakehouse.ingest.records import RecordRejected, decode_json

TOAST_PLACEHOLDER = "__debezium_unavailable_value"
DEFAULTS = ConnectorModes()
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


def parse_change(
    value: bytes | None, declared: dict[str, str], modes: ConnectorModes = DEFAULTS
) -> ChangeEvent | None:
    """A decoded change, or None for a tombstone (the null value after a delete).

    ``modes``: the source's connector options (``CdcSource.connector``), which decide
    what a value without the schema wrapper means."""
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
    before = _decode_row(document.get("before"), field_schemas, declared, modes, "before")
    after = _decode_row(document.get("after"), field_schemas, declared, modes, "after")
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


def _decode_row(row, field_schemas, declared, modes, which) -> dict[str, Any] | None:
    if row is None:
        return None
    if not isinstance(row, dict):
        raise RecordRejected("envelope", f"'{which}' is not an object")
    decoded = {}
    for column, raw in row.items():
        try:
            decoded[column] = decode_value(
                raw, field_schemas.get(column), declared.get(column), modes
            )
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise RecordRejected(
                "decode", f"{which}.{column}: cannot decode {raw!r}: {exc}"
            ) from None
    return decoded


def decode_value(
    raw: Any, field_schema: dict | None, declared: str | None, modes: ConnectorModes = DEFAULTS
) -> Any:
    """One column value: decoded by its Debezium encoding (the schema's, else the one
    ``modes`` and the declared type imply), then given the declared type where that is
    lossless. A value that cannot be is returned as decoded, for the schema check."""
    if raw is None:
        return None
    if _unchanged_toast(raw, field_schema, modes):
        return UNAVAILABLE
    if declared is None:
        return _undeclared(raw, field_schema)
    declared = declared.strip()
    if field_schema is not None:
        value = debezium_values.by_schema(raw, field_schema, declared, modes)
    else:
        value = debezium_values.by_declared(raw, declared, modes)
    return to_declared(value, declared)


def _unchanged_toast(raw: Any, field_schema: dict | None, modes: ConnectorModes) -> bool:
    """The connector's placeholder for an unchanged TOAST value, in the column's encoding:
    the text itself, a text array holding it, an integer array of its bytes, or a bytea
    written as the binary mode writes bytes (a ``bytes`` field: always base64)."""
    if isinstance(raw, list):
        return raw in ([TOAST_PLACEHOLDER], _TOAST_BYTES_LIST)
    if not isinstance(raw, str):
        return False
    if raw == TOAST_PLACEHOLDER:
        return True
    kind = (field_schema or {}).get("type")
    if kind == "bytes":
        return raw == _TOAST_BASE64
    if kind is None or (kind == "string" and modes.binary_handling_mode != "bytes"):
        return raw == _TOAST_BINARY[modes.binary_handling_mode] or (
            modes.binary_handling_mode == "hex" and raw.lower() == _TOAST_BINARY["hex"]
        )
    return False


_TOAST_BYTES = TOAST_PLACEHOLDER.encode()
_TOAST_BYTES_LIST = list(_TOAST_BYTES)
_TOAST_BASE64 = base64.b64encode(_TOAST_BYTES).decode()
_TOAST_BINARY = {
    "bytes": _TOAST_BASE64,  # the JSON converter writes bytes as base64
    "base64": _TOAST_BASE64,
    "base64-url-safe": base64.urlsafe_b64encode(_TOAST_BYTES).decode(),
    "hex": _TOAST_BYTES.hex(),
}
# the encodings undeclared columns have been decoded from since before the declared
# types took part: a column that evolved into silver keeps the type it was given
_UNDECLARED = {
    "org.apache.kafka.connect.data.Decimal",
    "io.debezium.time.Date",
    "io.debezium.time.Timestamp",
    "io.debezium.time.MicroTimestamp",
    "io.debezium.time.NanoTimestamp",
    "io.debezium.time.ZonedTimestamp",
}


def _undeclared(raw: Any, field_schema: dict | None) -> Any:
    if field_schema is not None and field_schema.get("name") in _UNDECLARED:
        return debezium_values.by_schema(raw, field_schema, None, DEFAULTS)
    return raw


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
