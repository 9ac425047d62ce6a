"""Debezium change events of the shop's tables, as the PostgreSQL connector emits them.

``customers``, ``orders`` and ``order_items`` change on one database clock: an order
and its items are one transaction (one ``txId``), statuses move on later, customers
sign up, change and leave. With a PostgreSQL connection every operation is really
executed and each event carries the row as stored and the server's WAL position as
``source.lsn``; without one (the demo on a laptop without PostgreSQL) rows and LSNs
are simulated. Either way the envelope is Debezium's: ``before``/``after``/``op``/
``source``/``ts_ms``, optionally wrapped in ``schema``/``payload``, values encoded per
its data type mappings, unchanged TOAST columns as the placeholder, a tombstone
after a delete.
"""

from __future__ import annotations

import base64
import bisect
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from lakehouse.ingest.debezium import TOAST_PLACEHOLDER

EPOCH = datetime(1970, 1, 1)
CHANNELS = ["search", "social", "email", "display", "direct"]
COUNTRIES = ["DE", "FR", "NL", "US", "IT"]


def _decimal_field(name: str, precision: int, scale: int) -> dict:
    return {
        "field": name,
        "type": "bytes",
        "optional": False,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)},
    }


def _timestamp_field(name: str) -> dict:
    return {
        "field": name,
        "type": "int64",
        "optional": False,
        "name": "io.debezium.time.MicroTimestamp",
    }


@dataclass(frozen=True)
class ShopTable:
    """One table of the shop database: its DDL and Debezium's schema of its rows."""

    name: str
    key: str
    ddl: str
    fields: list[dict] = field(default_factory=list)


CUSTOMERS = ShopTable(
    name="customers",
    key="customer_id",
    ddl="""
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
""",
    fields=[
        {"field": "customer_id", "type": "string", "optional": False},
        {"field": "email", "type": "string", "optional": False},
        {"field": "full_name", "type": "string", "optional": False},
        {"field": "country", "type": "string", "optional": False},
        _decimal_field("credit", 10, 2),
        {
            "field": "signup_date",
            "type": "int32",
            "optional": False,
            "name": "io.debezium.time.Date",
        },
        _timestamp_field("updated_at"),
        {"field": "notes", "type": "string", "optional": True},
    ],
)
ORDERS = ShopTable(
    name="orders",
    key="order_id",
    ddl="""
create table if not exists orders (
    order_id text primary key,
    customer_id text not null,
    status text not null,
    channel text not null,
    order_ts timestamp not null,
    updated_at timestamp not null
)
""",
    fields=[
        {"field": "order_id", "type": "string", "optional": False},
        {"field": "customer_id", "type": "string", "optional": False},
        {"field": "status", "type": "string", "optional": False},
        {"field": "channel", "type": "string", "optional": False},
        _timestamp_field("order_ts"),
        _timestamp_field("updated_at"),
    ],
)
ORDER_ITEMS = ShopTable(
    name="order_items",
    key="order_item_id",
    ddl="""
create table if not exists order_items (
    order_item_id text primary key,
    order_id text not null,
    product_id text not null,
    quantity integer not null,
    unit_price numeric(10, 2) not null,
    updated_at timestamp not null
)
""",
    fields=[
        {"field": "order_item_id", "type": "string", "optional": False},
        {"field": "order_id", "type": "string", "optional": False},
        {"field": "product_id", "type": "string", "optional": False},
        {"field": "quantity", "type": "int32", "optional": False},
        _decimal_field("unit_price", 10, 2),
        _timestamp_field("updated_at"),
    ],
)
TABLES = {t.name: t for t in (CUSTOMERS, ORDERS, ORDER_ITEMS)}


@dataclass(frozen=True)
class CdcMessage:
    key: bytes
    value: bytes | None  # None: tombstone
    table: str = CUSTOMERS.name


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


def envelope(
    op, before, after, lsn, ts_ms, tx_id, with_schema, unchanged_toast=frozenset(), table=CUSTOMERS
):
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
            "table": table.name,
            "txId": tx_id,
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": ts_ms + 5,
    }
    if not with_schema:
        return payload
    row_schema = {"type": "struct", "optional": True, "fields": table.fields}
    value_name = f"shop.public.{table.name}.Value"
    schema = {
        "type": "struct",
        "name": f"shop.public.{table.name}.Envelope",
        "fields": [
            {**row_schema, "field": "before", "name": value_name},
            {**row_schema, "field": "after", "name": value_name},
            {"type": "struct", "field": "source", "optional": False, "fields": []},
            {"type": "string", "field": "op", "optional": False},
            {"type": "int64", "field": "ts_ms", "optional": True},
        ],
    }
    return {"schema": schema, "payload": payload}


class ShopChanges:
    """Seeded inserts, updates and deletes on the shop's tables; ``conn`` makes them real.

    ``tables`` limits the simulation (the customers-only changelog of the CDC tests).
    ``mean_gap_s`` spaces the commits on the clock, so a demo can span several days.
    """

    def __init__(
        self,
        seed: int = 3,
        conn=None,
        with_schema_every: int = 2,
        tables: tuple[str, ...] = ("customers", "orders", "order_items"),
        start: datetime = datetime(2026, 11, 1, 8, 0, 0),
        mean_gap_s: int = 45,
    ) -> None:
        self.rng = random.Random(seed)
        self.conn = conn
        self.tables = tables
        self.rows: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in tables}
        self.lsn = 20_000_000
        self.tx = 700
        self.clock = start
        self.max_gap = max(2, 2 * mean_gap_s - 1)
        self.counters = {t: 0 for t in tables}
        # what the steps draw from, kept sorted as rows change: sorting every table at
        # every step made a demo of 50x the data run for hours
        self.keys: dict[str, list[str]] = {t: [] for t in tables}
        self.open_orders: list[str] = []  # status placed or paid
        self.open_items: list[str] = []  # items of open orders
        self.items_of: dict[str, list[str]] = {}  # order_id -> its items' keys
        self.with_schema_every = with_schema_every
        self.messages: list[CdcMessage] = []
        if conn is not None:
            for name in tables:
                conn.execute(TABLES[name].ddl)
                conn.execute(f"truncate {name}")
            conn.commit()

    # -- the clock and the log ------------------------------------------------------

    def _begin(self) -> None:
        """A new transaction: the clock moves on, a new txId."""
        self.clock += timedelta(seconds=self.rng.randint(1, self.max_gap))
        self.tx += 1

    def _position(self) -> tuple[int, int]:
        if self.conn is not None:
            text = self.conn.execute("select pg_current_wal_lsn()::text").fetchone()[0]
            high, low = text.split("/")
            self.lsn = (int(high, 16) << 32) + int(low, 16)
        else:
            self.lsn += self.rng.randint(40, 400)
        return self.lsn, int(self.clock.replace(tzinfo=UTC).timestamp() * 1000)

    def _emit(self, table: ShopTable, op, before, after, unchanged_toast=frozenset()) -> None:
        lsn, ts_ms = self._position()
        key = (after or before)[table.key]
        with_schema = len(self.messages) % self.with_schema_every == 0
        value = envelope(
            op, before, after, lsn, ts_ms, self.tx, with_schema, unchanged_toast, table
        )
        key_bytes = json.dumps({table.key: key}).encode()
        self.messages.append(CdcMessage(key_bytes, json.dumps(value).encode(), table.name))
        if op == "d":
            self.messages.append(CdcMessage(key_bytes, None, table.name))

    # -- writes (real when a connection is given) -------------------------------------

    def _write(self, sql: str, params: tuple) -> dict[str, Any] | None:
        if self.conn is None:
            return None
        cursor = self.conn.execute(sql, params)
        names = [c.name for c in cursor.description]
        row = cursor.fetchone()
        return dict(zip(names, row, strict=True)) if row else None

    def _commit(self) -> None:
        if self.conn is not None:
            self.conn.commit()

    def _insert(self, table: ShopTable, row: dict[str, Any], op: str = "c") -> dict[str, Any]:
        columns = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        stored = self._write(
            f"insert into {table.name} ({columns}) values ({marks}) returning *",
            tuple(row.values()),
        ) or dict(row)
        self.rows[table.name][row[table.key]] = stored
        self._index(table.name, row[table.key], None, stored)
        self._emit(table, op, None, stored)
        return stored

    def _update(self, table: ShopTable, key: str, changes: dict[str, Any], toast=frozenset()):
        sets = ", ".join(f"{c} = %s" for c in changes)
        stored = self._write(
            f"update {table.name} set {sets} where {table.key} = %s returning *",
            (*changes.values(), key),
        ) or {**self.rows[table.name][key], **changes}
        self._index(table.name, key, self.rows[table.name][key], stored)
        self.rows[table.name][key] = stored
        self._emit(table, "u", None, stored, unchanged_toast=toast)

    def _delete(self, table: ShopTable, key: str) -> None:
        self._write(f"delete from {table.name} where {table.key} = %s returning *", (key,))
        self._index(table.name, key, self.rows[table.name].pop(key), None)
        self._emit(table, "d", {table.key: key}, None)  # default REPLICA IDENTITY: key only

    def _index(self, name: str, key: str, before: dict | None, after: dict | None) -> None:
        """Keep ``keys``, ``open_orders`` and ``open_items`` equal to sorting the rows."""
        if before is None:
            bisect.insort(self.keys[name], key)
        elif after is None:
            _discard(self.keys[name], key)
        if name == "orders":
            was, now = _is_open(before), _is_open(after)
            if now and not was:
                bisect.insort(self.open_orders, key)
                for item in self.items_of.get(key, []):
                    bisect.insort(self.open_items, item)
            elif was and not now:
                _discard(self.open_orders, key)
                for item in self.items_of.get(key, []):
                    _discard(self.open_items, item)
        elif name == "order_items":
            order = (after or before)["order_id"]
            if before is None:
                self.items_of.setdefault(order, []).append(key)
                if _is_open(self.rows.get("orders", {}).get(order)):
                    bisect.insort(self.open_items, key)
            elif after is None:
                self.items_of[order].remove(key)
                _discard(self.open_items, key)

    def _next_id(self, table: str) -> int:
        self.counters[table] += 1
        return self.counters[table]

    # -- customers ---------------------------------------------------------------------

    def _new_customer(self) -> dict[str, Any]:
        i = self._next_id("customers")
        return {
            "customer_id": f"c-{i:05d}",
            "email": f"customer{i}@example.com",
            "full_name": f"Customer {i}",
            "country": self.rng.choice(COUNTRIES[:4]),
            "credit": Decimal(self.rng.randint(-5000, 900_000)).scaleb(-2),
            "signup_date": date(2024, 1, 1) + timedelta(days=self.rng.randint(0, 900)),
            "updated_at": self.clock.replace(microsecond=self.rng.randint(0, 999_999)),
            "notes": "x" * self.rng.randint(0, 3000) or None,
        }

    def _customer_step(self) -> None:
        customers = self.rows["customers"]
        roll = self.rng.random()
        if roll < 0.25 or not customers:
            self._insert(CUSTOMERS, self._new_customer())
        elif roll < 0.8:
            key = self.rng.choice(self.keys["customers"])
            changes: dict[str, Any] = {"updated_at": self.clock + timedelta(seconds=1)}
            if self.rng.random() < 0.5:
                changes["country"] = self.rng.choice(COUNTRIES)
            if self.rng.random() < 0.5:
                changes["credit"] = Decimal(self.rng.randint(-5000, 900_000)).scaleb(-2)
            if self.rng.random() < 0.2:
                changes["notes"] = "y" * self.rng.randint(1, 3000)
            notes = {**customers[key], **changes}.get("notes")
            toast = set() if "notes" in changes or notes is None else {"notes"}
            self._update(CUSTOMERS, key, changes, toast)
        else:
            self._delete(CUSTOMERS, self.rng.choice(self.keys["customers"]))

    # -- orders and their items ---------------------------------------------------------

    def _place_order(self) -> None:
        customer = self.rng.choice(self.keys["customers"])
        now = self.clock.replace(microsecond=self.rng.randint(0, 999_999))
        order_id = f"o-{self._next_id('orders'):06d}"
        self._insert(
            ORDERS,
            {
                "order_id": order_id,
                "customer_id": customer,
                "status": "placed",
                "channel": self.rng.choices(CHANNELS, weights=[35, 25, 15, 10, 15])[0],
                "order_ts": now,
                "updated_at": now,
            },
        )
        for _ in range(self.rng.randint(1, 4)):
            product = self.rng.randrange(200)
            self._insert(
                ORDER_ITEMS,
                {
                    "order_item_id": f"oi-{self._next_id('order_items'):07d}",
                    "order_id": order_id,
                    "product_id": f"p-{product:04d}",
                    "quantity": self.rng.randint(1, 3),
                    "unit_price": Decimal(self.rng.randint(200, 20_000)).scaleb(-2),
                    "updated_at": now,
                },
            )

    def _order_step(self) -> None:
        orders = self.rows["orders"]
        open_orders = self.open_orders
        roll = self.rng.random()
        if roll < 0.45 or not open_orders:
            self._place_order()
        elif roll < 0.9:
            key = self.rng.choice(open_orders)
            status = orders[key]["status"]
            if status == "placed":
                new = "cancelled" if self.rng.random() < 0.12 else "paid"
            else:
                new = "shipped"
            self._update(ORDERS, key, {"status": new, "updated_at": self.clock})
        else:
            editable = self.open_items
            if not editable:
                self._place_order()
                return
            key = self.rng.choice(editable)
            if self.rng.random() < 0.5:
                quantity = self.rng.randint(1, 5)
                self._update(ORDER_ITEMS, key, {"quantity": quantity, "updated_at": self.clock})
            else:
                self._delete(ORDER_ITEMS, key)

    # -- the simulation -------------------------------------------------------------------

    def snapshot(self, n: int) -> None:
        """Debezium's initial snapshot (op ``r``) of ``n`` customers."""
        for _ in range(n):
            self._begin()
            self._insert(CUSTOMERS, self._new_customer(), op="r")
            self._commit()

    def step(self) -> None:
        self._begin()
        ordering = "orders" in self.tables and self.rows["customers"]
        if ordering and self.rng.random() < 0.6:
            self._order_step()
        else:
            self._customer_step()
        self._commit()


def _is_open(order: dict[str, Any] | None) -> bool:
    return order is not None and order["status"] in ("placed", "paid")


def _discard(keys: list[str], key: str) -> None:
    """Remove ``key`` from the sorted list ``keys`` if it is there."""
    at = bisect.bisect_left(keys, key)
    if at < len(keys) and keys[at] == key:
        del keys[at]


def generate_shop_changes(
    snapshot: int = 40,
    steps: int = 300,
    seed: int = 3,
    conn=None,
    tables: tuple[str, ...] = ("customers", "orders", "order_items"),
    mean_gap_s: int = 45,
) -> tuple[list[CdcMessage], dict[str, dict[str, dict[str, Any]]]]:
    """The change messages in commit order, and the final rows by table and key."""
    changes = ShopChanges(seed=seed, conn=conn, tables=tables, mean_gap_s=mean_gap_s)
    changes.snapshot(snapshot)
    for _ in range(steps):
        changes.step()
    return changes.messages, changes.rows


def generate_changes(snapshot: int = 40, steps: int = 300, seed: int = 3, conn=None):
    """The ``customers`` changelog alone, and its final rows by key."""
    messages, rows = generate_shop_changes(snapshot, steps, seed, conn, tables=("customers",))
    return messages, rows["customers"]
