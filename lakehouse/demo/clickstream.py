"""Clickstream events: page views, add-to-cart, checkout; some late, duplicated or malformed.

Seeded, so the same scale always yields byte-identical messages in the same order,
and tests can compute the expected silver and gold results from them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 3
EVENTS_PER_SCALE = 2_000
PAGES = ["/", "/search", "/cart", "/checkout", "/account"]


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes


def generate(scale: int = 1, seed: int = 7) -> list[Message]:
    """Messages in production order; duplicates re-send an earlier event verbatim."""
    rng = random.Random(seed)
    users = [f"u-{i:05d}" for i in range(max(50, 25 * scale))]
    products = [f"p-{i:04d}" for i in range(200)]
    span = DAYS * 86_400
    messages: list[Message] = []
    sent: list[Message] = []
    for n in range(EVENTS_PER_SCALE * scale):
        user = rng.choice(users)
        offset = int(span * n / (EVENTS_PER_SCALE * scale))
        if rng.random() < 0.03:  # late: happened up to two hours before it is sent
            offset = max(0, offset - rng.randint(600, 7_200))
        ts = START + timedelta(seconds=offset, milliseconds=rng.randint(0, 999))
        kind = rng.choices(["page_view", "add_to_cart", "checkout"], weights=[85, 10, 5])[0]
        product = rng.choice(products)
        page = f"/product/{product}" if rng.random() < 0.6 else rng.choice(PAGES)
        event = {
            "event_id": f"e-{n:08d}",
            "event_type": kind,
            "user_id": user,
            "session_id": f"s-{user}-{offset // 1800}",
            "page": page,
            "product_id": product if page.startswith("/product/") or kind != "page_view" else None,
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        roll = rng.random()
        if roll < 0.003:
            value = b'{"event_id": "broken' + str(n).encode()  # truncated JSON
        elif roll < 0.005:
            del event["user_id"]
            value = json.dumps(event).encode()
        elif roll < 0.006:
            value = b"\xff\xfe not utf-8 " + str(n).encode()
        elif roll < 0.008:
            event["ts"] = "yesterday-ish"  # lands in bronze, rejected by silver
            value = json.dumps(event).encode()
        else:
            value = json.dumps(event).encode()
        message = Message(key=user.encode(), value=value)
        messages.append(message)
        sent.append(message)
        if rng.random() < 0.02 and sent:  # at-least-once producer upstream: a resend
            messages.append(rng.choice(sent[-50:]))
    return messages
