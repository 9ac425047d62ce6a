"""Debezium PostgreSQL value encodings, decoded to what the database held (step one of two).

With Debezium's ``schema`` wrapper every field names its encoding (its semantic type,
e.g. ``io.debezium.time.MicroTime``, or its Kafka Connect type, e.g. ``bytes``), so
the value decodes exactly. Without it the column's declared type and the source's
connector modes (``connector:`` in sources.yml) say what the connector sent. Either way
the result is a plain value (Decimal, date, datetime in UTC, int, float, str, bytes,
list, dict, or one of the small types below for what Python has no exact type for);
whether it fits the declared column is :mod:`lakehouse.ingest.coerce`'s question.

A value that cannot be what the encoding says (bad base64, a NanoTimestamp with
nanoseconds Iceberg's microseconds would drop) raises ValueError: the record is
quarantined as undecodable. PostgreSQL's ``infinity`` timestamps decode to the strings
``infinity`` / ``-infinity``: a string column keeps them, a timestamp column cannot.
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lakehouse.declarations.sources import ConnectorModes

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY = date(1970, 1, 1)
DAY_MICROS = 86_400_000_000
# TIMESTAMP 'infinity' / '-infinity': the PostgreSQL JDBC driver's sentinels, which the
# connector documents sending in every integer timestamp encoding
INFINITY = {9223372036825200000: "infinity", -9223372036832400000: "-infinity"}
DECIMAL_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
NOT_A_NUMBER = {"NAN", "NaN", "nan"}  # decimal.handling.mode=string sends "NAN"
ZONED_TIME = re.compile(
    r"^([01]\d|2[0-4]):[0-5]\d(:[0-5]\d(\.\d{1,9})?)?(Z|[+-]\d\d(:?\d\d){0,2})$"
)
INTERVAL = re.compile(
    r"^-?P(?!$)(-?\d+Y)?(-?\d+M)?(-?\d+W)?(-?\d+D)?(T(?=-?\d)(-?\d+H)?(-?\d+M)?(-?\d+(\.\d+)?S)?)?$"
)
FRACTION = re.compile(r"[.,](\d+)")


@dataclass(frozen=True)
class TimeOfDay:
    """PostgreSQL's TIME: microseconds since midnight, 24:00:00 included (which
    ``datetime.time`` cannot hold)."""

    micros: int

    def iso(self) -> str:
        seconds, micros = divmod(self.micros, 1_000_000)
        text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        return f"{text}.{micros:06d}" if micros else text


@dataclass(frozen=True)
class BitString:
    """BIT(n) / BIT VARYING: the bits as a number (first bit most significant) and the
    length the column declares (None when the event does not say)."""

    value: int
    length: int | None

    def text(self) -> str:
        """PostgreSQL's text form: zero-padded to the declared length. BIT VARYING's
        leading zeros are not in the event (the connector sizes it by content), so an
        unbounded one is written without them."""
        width = self.length if self.length is not None and self.length < 2**31 - 1 else 0
        return format(self.value, f"0{width}b")


@dataclass(frozen=True)
class Duration:
    """io.debezium.time.MicroDuration: an INTERVAL as approximate microseconds
    (a month counted as 365.25 / 12 days)."""

    micros: int

    def iso(self) -> str:
        sign = "-" if self.micros < 0 else ""
        seconds = Decimal(abs(self.micros)).scaleb(-6).normalize()
        return f"{sign}PT{seconds:f}S"


def by_schema(raw: Any, schema: dict, declared: str | None, modes: ConnectorModes) -> Any:
    """The value of a field whose Kafka Connect schema the event carries."""
    name = schema.get("name")
    params = schema.get("parameters")
    params = params if isinstance(params, dict) else {}
    decoder = BY_NAME.get(name)
    if decoder is not None:
        return decoder(raw, params)
    kind = schema.get("type")
    if kind == "bytes":
        return _base64(raw)
    if kind == "array":
        items = schema.get("items") or {}
        return [None if v is None else by_schema(v, items, None, modes) for v in _list(raw)]
    if kind == "map":
        values = schema.get("values") or {}
        return {k: None if v is None else by_schema(v, values, None, modes) for k, v in _map(raw)}
    if kind == "struct" and isinstance(raw, dict):
        fields = {f.get("field"): f for f in schema.get("fields") or [] if isinstance(f, dict)}
        return {
            k: None if v is None or k not in fields else by_schema(v, fields[k], None, modes)
            for k, v in raw.items()
        }
    if kind == "string" and modes.decimal_handling_mode == "string" and _numeric(declared):
        return _decimal_text(raw, strict=False)  # NUMERIC sent as text: the schema says string
    return raw


def by_declared(raw: Any, declared: str, modes: ConnectorModes) -> Any:
    """The value of a field of an event without the schema wrapper: what the connector,
    configured as ``modes``, sends for a column of the declared type."""
    if isinstance(raw, dict) and set(raw) == {"scale", "value"} and _numeric(declared):
        return _variable_scale_decimal(raw, {})
    if declared.startswith("decimal("):
        if isinstance(raw, str):
            scale = int(declared[len("decimal(") : -1].split(",")[1])
            if modes.decimal_handling_mode == "precise" and _is_base64(raw):
                return _decimal(raw, {"scale": scale})
            return _decimal_text(raw, strict=True)
        return raw  # decimal.handling.mode=double: a JSON number
    if declared in ("int", "long") and isinstance(raw, str):
        return _decimal_text(raw, strict=False) if modes.decimal_handling_mode == "string" else raw
    if declared == "date":
        return _date(raw, {}) if isinstance(raw, int) else date.fromisoformat(raw)
    if declared == "timestamp":
        if isinstance(raw, int) and not isinstance(raw, bool):
            connect = modes.time_precision_mode == "connect"  # else TIMESTAMP(4-6): micros
            return _timestamp_ms(raw, {}) if connect else _timestamp_us(raw, {})
        return _zoned_timestamp(raw, {}, naive_is_utc=True)
    return raw


# --- one decoder per semantic type ------------------------------------------------------


def _decimal(raw: Any, params: dict) -> Decimal:
    """org.apache.kafka.connect.data.Decimal: big-endian two's-complement bytes, base64;
    a JSON number where the converter writes decimals as numbers (decimal.format=NUMERIC)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return Decimal(repr(raw))
    unscaled = int.from_bytes(_base64(raw), "big", signed=True)
    return Decimal(f"{unscaled}E-{int(params.get('scale', 0))}")  # exact at any precision


def _variable_scale_decimal(raw: Any, params: dict) -> Decimal:
    """io.debezium.data.VariableScaleDecimal: a struct of ``scale`` and unscaled ``value``."""
    if not isinstance(raw, dict) or "value" not in raw:
        raise ValueError("VariableScaleDecimal is a struct of scale and value")
    return _decimal(raw["value"], {"scale": raw.get("scale") or 0})


def _decimal_text(raw: Any, strict: bool) -> Any:
    """decimal.handling.mode=string: the number's text, or "NAN" (which no decimal holds)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if DECIMAL_TEXT.match(text):
        return Decimal(text)
    if text in NOT_A_NUMBER:
        return float("nan")
    if strict:
        raise ValueError("neither base64 nor a decimal number")
    return raw


def _date(raw: Any, params: dict) -> date:
    return EPOCH_DAY + timedelta(days=_integer(raw))


def _time_ms(raw: Any, params: dict) -> TimeOfDay:
    return _time_of_day(_integer(raw) * 1000)


def _time_us(raw: Any, params: dict) -> TimeOfDay:
    return _time_of_day(_integer(raw))


def _time_ns(raw: Any, params: dict) -> TimeOfDay:
    return _time_of_day(_exact_micros(_integer(raw)))


def _time_of_day(micros: int) -> TimeOfDay:
    if not 0 <= micros <= DAY_MICROS:
        raise ValueError(f"{micros} µs is not a time of day")
    return TimeOfDay(micros)


def _timestamp_ms(raw: Any, params: dict) -> datetime | str:
    value = _integer(raw)
    return INFINITY.get(value) or EPOCH + timedelta(milliseconds=value)


def _timestamp_us(raw: Any, params: dict) -> datetime | str:
    value = _integer(raw)
    return INFINITY.get(value) or EPOCH + timedelta(microseconds=value)


def _timestamp_ns(raw: Any, params: dict) -> datetime | str:
    value = _integer(raw)
    return INFINITY.get(value) or EPOCH + timedelta(microseconds=_exact_micros(value))


def _zoned_timestamp(raw: Any, params: dict, naive_is_utc: bool = False) -> datetime | str:
    """io.debezium.time.ZonedTimestamp: ISO-8601 with an offset (the connector writes UTC)."""
    text = _string(raw)
    if text in ("infinity", "-infinity"):
        return text
    _no_lost_nanoseconds(text)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        if not naive_is_utc:
            raise ValueError("a ZonedTimestamp without an offset")
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _zoned_time(raw: Any, params: dict) -> str:
    """io.debezium.time.ZonedTime: ISO-8601 time with an offset, kept as sent."""
    text = _string(raw)
    if not ZONED_TIME.match(text):
        raise ValueError("not an ISO-8601 time with an offset")
    return text


def _micro_duration(raw: Any, params: dict) -> Duration:
    return Duration(_integer(raw))


def _interval(raw: Any, params: dict) -> str:
    """io.debezium.time.Interval (interval.handling.mode=string): ISO-8601, exact."""
    text = _string(raw)
    if not INTERVAL.match(text):
        raise ValueError("not an ISO-8601 interval (P<y>Y<m>M<d>DT<h>H<m>M<s>S)")
    return text


def _bits(raw: Any, params: dict) -> BitString:
    """io.debezium.data.Bits: the bits little-endian (the last bit is bit 0 of byte 0)."""
    length = params.get("length")
    value = int.from_bytes(_base64(raw), "little")
    return BitString(value, int(length) if length is not None else None)


def _uuid(raw: Any, params: dict) -> str:
    text = _string(raw)
    uuid.UUID(text)
    return text


def _text(raw: Any, params: dict) -> str:
    """Json, Xml, Enum, EnumSet, Ltree: the database's text of the value, kept as sent."""
    return _string(raw)


BY_NAME = {
    "org.apache.kafka.connect.data.Decimal": _decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_scale_decimal,
    "io.debezium.time.Date": _date,
    "org.apache.kafka.connect.data.Date": _date,
    "io.debezium.time.Time": _time_ms,
    "org.apache.kafka.connect.data.Time": _time_ms,
    "io.debezium.time.MicroTime": _time_us,
    "io.debezium.time.NanoTime": _time_ns,
    "io.debezium.time.Timestamp": _timestamp_ms,
    "org.apache.kafka.connect.data.Timestamp": _timestamp_ms,
    "io.debezium.time.MicroTimestamp": _timestamp_us,
    "io.debezium.time.NanoTimestamp": _timestamp_ns,
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
    "io.debezium.time.ZonedTime": _zoned_time,
    "io.debezium.time.MicroDuration": _micro_duration,
    "io.debezium.time.Interval": _interval,
    "io.debezium.data.Bits": _bits,
    "io.debezium.data.Uuid": _uuid,
    "io.debezium.data.Json": _text,
    "io.debezium.data.Xml": _text,
    "io.debezium.data.Enum": _text,
    "io.debezium.data.EnumSet": _text,
    "io.debezium.data.Ltree": _text,
}


# --- shared checks ----------------------------------------------------------------------


def _numeric(declared: str | None) -> bool:
    return declared is not None and (declared in ("int", "long") or declared.startswith("decimal("))


def _integer(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError("expected an integer")
    return raw


def _string(raw: Any) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _list(raw: Any) -> list:
    if not isinstance(raw, list):
        raise ValueError("expected an array")
    return raw


def _map(raw: Any) -> list[tuple[Any, Any]]:
    """A MAP: a JSON object, or (keys that are not strings) a list of [key, value] pairs."""
    if isinstance(raw, dict):
        return list(raw.items())
    if isinstance(raw, list) and all(isinstance(p, list) and len(p) == 2 for p in raw):
        return [tuple(p) for p in raw]
    raise ValueError("expected a map")


def _base64(raw: Any) -> bytes:
    return base64.b64decode(_string(raw), validate=True)


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def _exact_micros(nanos: int) -> int:
    micros, rest = divmod(nanos, 1000)
    if rest:
        raise ValueError("has nanoseconds; Iceberg keeps microseconds")
    return micros


def _no_lost_nanoseconds(text: str) -> None:
    fraction = FRACTION.search(text)
    if fraction and fraction.group(1)[6:].strip("0"):
        raise ValueError("has nanoseconds; Iceberg keeps microseconds")
