"""Turning raw source records into bronze rows or quarantine rows with a reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from lakehouse.declarations.layouts import QUARANTINE


class RecordRejected(ValueError):
    """A record that cannot enter bronze; ``rule`` names the rule it broke."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule = rule
        self.reason = reason


def decode_json(text: str) -> Any:
    """The JSON value of ``text``, or RecordRejected ("json") for anything ``json`` refuses.

    Valid JSON can still fail to decode: nesting deeper than the interpreter's
    recursion limit raises RecursionError, and an integer longer than Python's
    4,300-digit conversion limit raises ValueError. Either would otherwise crash the
    whole batch instead of quarantining one record.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordRejected("json", f"value is not valid JSON: {exc.msg} at {exc.pos}") from None
    except RecursionError:
        raise RecordRejected("json", "value nests too deeply to decode") from None
    except ValueError as exc:
        raise RecordRejected("json", f"value cannot be decoded: {exc}") from None


def json_object(text: str | None) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None: for quarantine's raw text, which may be
    anything a source sent (not JSON, an array, JSON too deep or long to decode)."""
    if text is None:
        return None
    try:
        value = decode_json(text)
    except RecordRejected:
        return None
    return value if isinstance(value, dict) else None


def parse_json_event(value: bytes | None, required: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        raise RecordRejected("not_null", "record value is null (tombstone)")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordRejected("utf8", f"value is not valid UTF-8: {exc}") from None
    event = decode_json(text)
    if not isinstance(event, dict):
        raise RecordRejected(
            "json_object", f"value is a JSON {type(event).__name__}, not an object"
        )
    missing = [name for name in required if event.get(name) in (None, "")]
    if missing:
        raise RecordRejected("required_fields", f"missing required field(s): {', '.join(missing)}")
    return event


def raw_text(value: bytes | None, limit: int = 64 * 1024) -> str | None:
    """The raw payload as stored in quarantine: lossless for UTF-8, escaped otherwise."""
    if value is None:
        return None
    text = value[:limit].decode("utf-8", errors="backslashreplace")
    return text if len(value) <= limit else text + f"...[truncated, {len(value)} bytes]"


@dataclass
class QuarantineBuffer:
    """Quarantine rows of one batch, in the generic quarantine layout."""

    source: str
    run_id: str
    ingested_at: datetime
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, rule: str, reason: str, raw: str | None, **coordinates: Any) -> None:
        self.rows.append(
            {
                "_source": self.source,
                "_rule": rule,
                "_reason": reason,
                "_raw": raw,
                "_ingested_at": self.ingested_at,
                "_run_id": self.run_id,
                **coordinates,
            }
        )

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=QUARANTINE.arrow_schema())

    def __len__(self) -> int:
        return len(self.rows)
