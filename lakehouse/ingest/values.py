"""Checking a raw value against a declared column type (the vocabulary of sources.yml)."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
INT_RANGES = {"int": 2**31, "long": 2**63}


def value_error(declared: str, value: Any) -> str | None:
    """Why ``value`` does not fit ``declared``, or None. Empty and null are allowed."""
    if value is None or value == "":
        return None
    declared = declared.strip()
    text = value if isinstance(value, str) else None
    try:
        if declared == "string":
            return None
        if declared in INT_RANGES:
            number = int(text.strip()) if text is not None else _exact_int(value)
            limit = INT_RANGES[declared]
            return None if -limit <= number < limit else f"{value!r} is out of range for {declared}"
        if declared == "double":
            float(text if text is not None else value)
            return None
        if declared == "boolean":
            if isinstance(value, bool) or (text or "").lower() in ("true", "false", "1", "0"):
                return None
            return f"{value!r} is not a boolean"
        if declared == "date":
            if isinstance(value, date) and not isinstance(value, datetime):
                return None
            date.fromisoformat(str(value))
            return None
        if declared == "timestamp":
            if isinstance(value, datetime):
                return None
            datetime.fromisoformat(str(value))
            return None
        if match := DECIMAL.match(declared):
            precision, scale = int(match[1]), int(match[2])
            number = Decimal(str(value).strip())
            if not number.is_finite():
                return f"{value!r} is not a finite decimal"
            exponent = number.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > scale:
                return f"{value!r} has more than {scale} decimal places"
            if len(number.quantize(Decimal(1).scaleb(-scale)).as_tuple().digits) > precision:
                return f"{value!r} exceeds decimal({precision},{scale})"
            return None
    except (ValueError, TypeError, InvalidOperation):
        return f"{value!r} is not a {declared}"
    return f"unknown declared type {declared!r}"


def _exact_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)
