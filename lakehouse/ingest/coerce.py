"""A decoded value in the type its column declares, when that loses nothing (step two of two).

The declared vocabulary (string, int, long, double, boolean, date, timestamp,
decimal(p,s)) is smaller than what sources send, so some values have one exact
rendering in a declared type: a TIME is microseconds since midnight in a ``long`` and
ISO-8601 text in a ``string``, bytes are standard base64 text, arrays and objects are
JSON text. A value without such a rendering is returned as it is, and the schema
check (``lakehouse.tables.evolution.fits``) then stops the source naming the column:
nothing here guesses or rounds.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import date, datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from lakehouse.ingest.debezium_values import DECIMAL_TEXT, BitString, Duration, TimeOfDay

MAX_PRECISION = 38  # Iceberg's widest decimal


def to_declared(value: Any, declared: str) -> Any:
    """``value`` as the declared type holds it, or ``value`` itself if it cannot be."""
    if declared.startswith("decimal("):
        return _to_decimal(value, int(declared[len("decimal(") : -1].split(",")[1]))
    if declared in ("int", "long"):
        return _to_integer(value)
    if declared == "string":
        return to_text(value)
    return value


def to_text(value: Any) -> Any:
    """The text a string column stores for ``value`` (numbers and booleans stay: a text
    column that starts receiving them is a type change to report, not to hide)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False)
    rendered = _rendered(value)
    return value if rendered is None else rendered


def _rendered(value: Any) -> str | None:
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, TimeOfDay | Duration):
        return value.iso()
    if isinstance(value, BitString):
        return value.text()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    rendered = _rendered(value)
    return str(value) if rendered is None else rendered


def _to_integer(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, TimeOfDay | Duration):
        return value.micros
    if isinstance(value, BitString):
        return value.value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _to_decimal(value: Any, scale: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and DECIMAL_TEXT.match(value.strip()):
        number = Decimal(value.strip())
    elif isinstance(value, float) and math.isfinite(value):
        number = Decimal(repr(value))  # the double's shortest text: what the database held
    elif isinstance(value, int | Decimal):
        number = Decimal(value)
    else:
        return value
    if not number.is_finite() or (number and number.adjusted() >= MAX_PRECISION):
        return value  # no decimal(p,s) holds it
    try:
        with localcontext() as exact:
            exact.prec = 2 * MAX_PRECISION + 2  # room for every digit: quantize never rounds
            quantized = number.quantize(Decimal(1).scaleb(-scale))
    except InvalidOperation:
        return value
    return quantized if quantized == number else value
