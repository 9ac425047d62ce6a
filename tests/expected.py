"""Expected results computed straight from the generated messages, with plain Python.

Deliberately independent of lakehouse.ingest and lakehouse.transforms: if both
agree, the pipeline did what the business rule says.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime

REQUIRED = ("event_id", "event_type", "user_id", "ts")


def parse(value: bytes) -> dict | None:
    try:
        event = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(event, dict) or any(event.get(k) in (None, "") for k in REQUIRED):
        return None
    return event


def expected_clickstream(messages) -> dict:
    parsed = [parse(m.value) for m in messages]
    bronze = [e for e in parsed if e is not None]
    views: dict[str, dict] = {}
    bad_ts = 0
    for event in bronze:
        if event["event_type"] != "page_view":
            continue
        try:
            ts = datetime.fromisoformat(event["ts"])
        except ValueError:
            bad_ts += 1
            continue
        views.setdefault(event["event_id"], {**event, "_ts": ts})
    daily: dict[str, dict] = defaultdict(lambda: {"views": 0, "users": set(), "sessions": set()})
    for view in views.values():
        day = daily[view["_ts"].date().isoformat()]
        day["views"] += 1
        day["users"].add(view["user_id"])
        day["sessions"].add(view["session_id"])
    return {
        "messages": len(messages),
        "bronze_rows": len(bronze),
        "quarantined": len(messages) - len(bronze),
        "silver_event_ids": set(views),
        "silver_bad_ts": bad_ts,
        "daily": {
            d: (v["views"], len(v["users"]), len(v["sessions"])) for d, v in sorted(daily.items())
        },
    }
