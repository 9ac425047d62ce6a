"""CDC sources keyed by timestamps, decimals and dates, and their changes in increments.

A key's value reaches silver's replacement of rows two ways: as the Python value a
change decodes to (``datetime``, ``Decimal``, ``date``) and as the value an Arrow
column stores. Each increment after the first touches more keys than
``tables.replace.FEW_KEYS`` (the path that compares keys as text, file by file), one
touches only a few; updates change a key's row, deletes and re-inserts reopen it.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lakehouse.declarations.sources import CdcSource
from lakehouse.demo.cdc import CdcMessage, ShopTable, envelope

KEYED = ShopTable(
    name="keyed",
    key="k_ts",
    ddl="",
    fields=[
        {
            "field": "k_ts",
            "type": "int64",
            "optional": False,
            "name": "io.debezium.time.MicroTimestamp",
        },
        {
            "field": "k_dec",
            "type": "bytes",
            "optional": False,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "10"},
        },
        {"field": "k_date", "type": "int32", "optional": False, "name": "io.debezium.time.Date"},
        {"field": "k_text", "type": "string", "optional": True},
        {"field": "v", "type": "string", "optional": True},
        {"field": "n", "type": "int64", "optional": True},
    ],
)
COLUMNS = {
    "k_ts": "timestamp",
    "k_dec": "decimal(10,2)",
    "k_date": "date",
    "k_text": "string",
    "v": "string",
    "n": "long",
}
# one source per key: a timestamp, a decimal, a date, and every type at once with a
# text part that is null for some keys
KEYS = {
    "timestamp": ("k_ts",),
    "decimal": ("k_dec",),
    "date": ("k_date",),
    "composite": ("k_text", "k_dec", "k_date", "k_ts"),
}


def keyed_source(kind: str) -> CdcSource:
    return CdcSource(
        name=f"keyed_{kind}",
        topic=f"shop.public.keyed_{kind}",
        keys=KEYS[kind],
        columns=COLUMNS,
    )


def keyed_row(i: int, version: int = 0) -> dict[str, Any]:
    """Row ``i``: keys whose Python text differs from Arrow's (microseconds of zero, a
    decimal's trailing zero), unique in every key column."""
    return {
        "k_ts": datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i, microseconds=7 * (i % 3)),
        "k_dec": Decimal(i * 10) / 100,  # 0.00, 0.10, ...: Decimal('1.5') is Arrow's 1.50
        "k_date": date(2000, 1, 1) + timedelta(days=i),
        "k_text": None if i % 4 == 0 else f"t{i % 7}",
        "v": f"row {i} version {version}",
        "n": version,
    }


def keyed_increments(seed: int) -> list[list[CdcMessage]]:
    """Inserts of 260 keys, then increments of many keys (updates, deletes, new keys,
    re-inserts), of a few keys, and of many again: changes in LSN order."""
    rng = random.Random(seed)
    lsn = [1_000]
    live: dict[int, int] = {}  # key -> version

    def message(op: str, i: int) -> CdcMessage:
        lsn[0] += rng.randint(1, 3)
        before = keyed_row(i, live.get(i, 0)) if op in ("u", "d") else None
        if op == "d":
            live.pop(i)
            after = None
        else:
            live[i] = live.get(i, -1) + 1
            after = keyed_row(i, live[i])
        value = envelope(
            op, before, after, lsn[0], 1_700_000_000_000 + lsn[0], lsn[0], True, table=KEYED
        )
        return CdcMessage(json.dumps({"i": i}).encode(), json.dumps(value).encode(), KEYED.name)

    increments = [[message("c", i) for i in range(260)]]
    for touched in (240, 8, 230):
        batch = []
        for i in rng.sample(sorted(live), touched):
            batch.append(message("d" if rng.random() < 0.05 else "u", i))
        gone = [i for i in range(300) if i not in live]
        for i in rng.sample(gone, min(len(gone), 3)):  # new keys, or deleted ones back
            batch.append(message("c", i))
        increments.append(batch)
    return increments
