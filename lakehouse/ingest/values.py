"""Checking a raw value against a declared column type (the vocabulary of sources.yml)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, tzinfo
from decimal import Context, Decimal, InvalidOperation
from typing import Any

DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
INT_RANGES = {"int": 2**31, "long": 2**63}


def value_error(declared: str, value: Any, zone: tzinfo = UTC) -> str | None:
    """Why ``value`` does not fit ``declared``, or None. Empty and null are allowed.

    ``zone``: the time zone a naive timestamp is in (the source's ``dialect.time_zone``).
    """
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
            if getattr(value, "nanosecond", 0):  # pandas.Timestamp of a timestamp[ns] column
                return f"{value!r} has sub-microsecond digits (timestamp keeps microseconds)"
            try:
                parse_timestamp(value, zone)
            except SkippedTime as exc:
                return str(exc)
            return None
        if match := DECIMAL.match(declared):
            precision, scale = int(match[1]), int(match[2])
            number = Decimal(str(value).strip())
            if not number.is_finite():
                return f"{value!r} is not a finite decimal"
            exponent = number.as_tuple().exponent
            if isinstance(exponent, int) and -exponent > scale:
                return f"{value!r} has more than {scale} decimal places"
            # quantized in a context wide enough for any value that can fit (decimal's
            # default, 28 digits, refused a valid decimal(38,10) of 19 integer digits);
            # one with more integer digits than that exceeds it without being quantized
            if (
                isinstance(exponent, int)
                and len(number.as_tuple().digits) + exponent > precision + 1
            ):
                return f"{value!r} exceeds decimal({precision},{scale})"
            wide = Context(prec=precision + scale + 2)
            quantized = number.quantize(Decimal(1).scaleb(-scale), context=wide)
            if len(quantized.as_tuple().digits) > precision:
                return f"{value!r} exceeds decimal({precision},{scale})"
            return None
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        return f"{value!r} is not a {declared}"
    return f"unknown declared type {declared!r}"


def _exact_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(value)


class SkippedTime(ValueError):
    """A naive wall time that its declared zone's clocks jumped over."""


def parse_timestamp(value: str | datetime, zone: tzinfo = UTC) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime: bronze's check and silver's typing
    both read timestamps here, so what bronze accepts is exactly what silver can store.

    Text or a datetime with an offset (``Z``, ``+02:00``) keeps it; a naive one is wall
    time in ``zone``. A wall time the zone's clocks skipped (a DST gap) names no instant:
    ValueError, so the row is quarantined rather than moved by an hour. A wall time the
    clocks showed twice (a DST fold) is taken as the first of the two (``fold=0``).
    """
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        local = moment.replace(tzinfo=zone)
        there_and_back = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        if there_and_back != moment:
            raise SkippedTime(
                f"{str(value)!r} does not exist in {zone} (its clocks skipped it); "
                "the file's time zone is declared as dialect.time_zone in sources.yml"
            )
        moment = local
    return moment.astimezone(UTC)
