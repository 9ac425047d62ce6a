"""Debezium change events of the shop's ``customers`` table, as the PostgreSQL connector emits.

With a PostgreSQL connection every operation is really executed and the event
carries the row as stored and the server's WAL position as ``source.lsn``; without
one (the demo on a laptop without PostgreSQL) rows and LSNs are simulated. Either
way the envelope is Debezium's: ``before``/``after``/``op``/``source``/``ts_ms``,
optionally wrapped in ``schema``/``payload``, values encoded per its data type
mappings, unchanged TOAST columns as the placeholder, a tombstone after a delete.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lakehouse.ingest.debezium import TOAST_PLACEHOLDER

TABLE = "customers"
KEY = "customer_id"
DDL = """
create table if not exists customers (
    customer_id text primary key,
    email text not null,
    full_name text not null,
    country text not null,
    credit numeric(10, 2) not null,
    signup_date date not null,
    updated_at timestamp not null,
    notes text
)
"""
FIELDS = [
    {"field": "customer_id", "type": "string", "optional": False},
    {"field": "email", "type": "string", "optional": False},
    {"field": "full_name", "type": "string", "optional": False},
    {"field": "country", "type": "string", "optional": False},
    {
        "field": "credit",
        "type": "bytes",
        "optional": False,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": "2", "connect.decimal.precision": "10"},
    },
    {"field": "signup_date", "type": "int32", "optional": False, "name": "io.debezium.time.Date"},
    {
        "field": "updated_at",
        "type": "int64",
        "optional": False,
        "name": "io.debezium.time.MicroTimestamp",
    },
    {"field": "notes", "type": "string", "optional": True},
]
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class CdcMessage:
    key: bytes
    value: bytes | None  # None: tombstone


def encode_row(row: dict[str, Any] | None, unchanged_toast: set[str] = frozenset()) -> dict | None:
    if row is None:
        return None
    out = {}
    for name, value in row.items():
        if name in unchanged_toast:
            out[name] = TOAST_PLACEHOLDER
        elif isinstance(value, Decimal):
            unscaled = int(value.scaleb(2))
            length = max(1, (unscaled.bit_length() + 8) // 8)
            out[name] = base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()
        elif isinstance(value, datetime):
            out[name] = (value.replace(tzinfo=None) - EPOCH) // timedelta(microseconds=1)
        elif isinstance(value, date):
            out[name] = (value - date(1970, 1, 1)).days
        else:
            out[name] = value
    return out


def envelope(op, before, after, lsn, ts_ms, tx_id, with_schema, unchanged_toast=frozenset()):
    payload = {
        "before": encode_row(before),
        "after": encode_row(after, unchanged_toast),
        "source": {
            "version": "2.7.0.Final",
            "connector": "postgresql",
            "name": "shop",
            "ts_ms": ts_ms,
            "snapshot": "true" if op == "r" else "false",
            "db": "shop",
            "schema": "public",
            "table": TABLE,
            "txId": tx_id,
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": ts_ms + 5,
    }
    if not with_schema:
        return payload
    row_schema = {"type": "struct", "optional": True, "fields": FIELDS}
    schema = {
        "type": "struct",
        "name": "shop.public.customers.Envelope",
        "fields": [
            {**row_schema, "field": "before", "name": "shop.public.customers.Value"},
            {**row_schema, "field": "after", "name": "shop.public.customers.Value"},
            {"type": "struct", "field": "source", "optional": False, "fields": []},
            {"type": "string", "field": "op", "optional": False},
            {"type": "int64", "field": "ts_ms", "optional": True},
        ],
    }
    return {"schema": schema, "payload": payload}


class CustomerChanges:
    """Random inserts, updates and deletes (seeded); ``conn`` makes them real."""

    def __init__(self, seed: int = 3, conn=None, with_schema_every: int = 2) -> None:
        self.rng = random.Random(seed)
        self.conn = conn
        self.rows: dict[str, dict[str, Any]] = {}
        self.lsn = 20_000_000
        self.tx = 700
        self.clock = datetime(2026, 11, 1, 8, 0, 0)
        self.next_id = 0
        self.with_schema_every = with_schema_every
        self.messages: list[CdcMessage] = []
        if conn is not None:
            conn.execute(DDL)
            conn.execute("truncate customers")
            conn.commit()

    def _tick(self) -> tuple[int, int]:
        self.clock += timedelta(seconds=self.rng.randint(1, 90))
        self.tx += 1
        if self.conn is not None:
            text = self.conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
            high, low = text.split("/")
            self.lsn = (int(high, 16) << 32) + int(low, 16)
        else:
            self.lsn += self.rng.randint(40, 400)
        return self.lsn, int(self.clock.replace(tzinfo=UTC).timestamp() * 1000)

    def _emit(self, op, before, after, unchanged_toast=frozenset()) -> None:
        lsn, ts_ms = self._tick()
        key = (after or before)[KEY]
        with_schema = len(self.messages) % self.with_schema_every == 0
        value = envelope(op, before, after, lsn, ts_ms, self.tx, with_schema, unchanged_toast)
        key_bytes = json.dumps({KEY: key}).encode()
        self.messages.append(CdcMessage(key_bytes, json.dumps(value).encode()))
        if op == "d":
            self.messages.append(CdcMessage(key_bytes, None))

    def _new_row(self) -> dict[str, Any]:
        self.next_id += 1
        i = self.next_id
        return {
            "customer_id": f"c-{i:05d}",
            "email": f"customer{i}@example.com",
            "full_name": f"Customer {i}",
            "country": self.rng.choice(["DE", "FR", "NL", "US"]),
            "credit": Decimal(self.rng.randint(-5000, 900_000)).scaleb(-2),
            "signup_date": date(2024, 1, 1) + timedelta(days=self.rng.randint(0, 900)),
            "updated_at": self.clock.replace(microsecond=self.rng.randint(0, 999_999)),
            "notes": "x" * self.rng.randint(0, 3000) or None,
        }

    def _write(self, sql: str, params: tuple) -> dict[str, Any] | None:
        if self.conn is None:
            return None
        cursor = self.conn.execute(sql, params)
        names = [c.name for c in cursor.description]
        row = cursor.fetchone()
        self.conn.commit()
        return dict(zip(names, row, strict=True)) if row else None

    def snapshot(self, n: int) -> None:
        for _ in range(n):
            row = self._new_row()
            stored = self._insert(row)
            self.rows[row[KEY]] = stored
            self._emit("r", None, stored)

    def _insert(self, row):
        columns = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        stored = self._write(
            f"insert into customers ({columns}) values ({marks}) returning *", tuple(row.values())
        )
        return stored or row

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.25 or not self.rows:
            row = self._new_row()
            stored = self._insert(row)
            self.rows[row[KEY]] = stored
            self._emit("c", None, stored)
        elif roll < 0.8:
            key = self.rng.choice(sorted(self.rows))
            changes = {"updated_at": self.clock + timedelta(seconds=1)}
            if self.rng.random() < 0.5:
                changes["country"] = self.rng.choice(["DE", "FR", "NL", "US", "IT"])
            if self.rng.random() < 0.5:
                changes["credit"] = Decimal(self.rng.randint(-5000, 900_000)).scaleb(-2)
            if self.rng.random() < 0.2:
                changes["notes"] = "y" * self.rng.randint(1, 3000)
            sets = ", ".join(f"{c} = %s" for c in changes)
            stored = self._write(
                f"update customers set {sets} where customer_id = %s returning *",
                (*changes.values(), key),
            ) or {**self.rows[key], **changes}
            self.rows[key] = stored
            toast = set() if "notes" in changes or stored.get("notes") is None else {"notes"}
            self._emit("u", None, stored, unchanged_toast=toast)
        else:
            key = self.rng.choice(sorted(self.rows))
            self._write("delete from customers where customer_id = %s returning *", (key,))
            del self.rows[key]
            self._emit("d", {KEY: key}, None)  # default REPLICA IDENTITY: key columns only


def generate_changes(snapshot: int = 40, steps: int = 300, seed: int = 3, conn=None):
    """The change messages in commit order, and the final rows by key."""
    changes = CustomerChanges(seed=seed, conn=conn)
    changes.snapshot(snapshot)
    for _ in range(steps):
        changes.step()
    return changes.messages, changes.rows
