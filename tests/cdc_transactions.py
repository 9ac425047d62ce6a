"""Transactions on a real PostgreSQL table, and the change events Debezium's PostgreSQL
connector documents for them.

Built from the connector's documentation ("Data change events" and "REPLICA IDENTITY"),
not from our demo generator: ``source.lsn`` is the WAL insert position after each
statement (increasing inside a transaction), ``source.ts_ms`` the transaction's commit
time (shared by all its changes), ``txId`` its id. A snapshot emits ``op: r`` reads that
all carry one LSN and one ``ts_ms``. An update of the primary key is a delete of the old
key, its tombstone and a create of the new key, at one LSN. Under ``REPLICA IDENTITY
DEFAULT`` an update carries no ``before`` and a delete's ``before`` holds only the key
(all other fields null); under ``FULL`` both carry the whole old row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from lakehouse.demo.cdc import CUSTOMERS, CdcMessage, envelope

COLUMNS = [f["field"] for f in CUSTOMERS.fields]
KEY = CUSTOMERS.key


class Connector:
    """The customers table of a real database, with the change events its statements make."""

    def __init__(self, conn, identity: str, with_schema: bool, start: datetime) -> None:
        self.conn = conn
        self.identity = identity
        self.with_schema = with_schema
        self.clock = start
        self.tx = 5000
        self.messages: list[CdcMessage] = []
        self.states: list[tuple[datetime, dict[str, dict]]] = []  # state after each commit
        self._pending: list[tuple] = []
        conn.execute(CUSTOMERS.ddl)
        conn.execute(f"alter table customers replica identity {identity}")
        conn.commit()

    # -- the database ------------------------------------------------------------------

    def rows(self) -> dict[str, dict[str, Any]]:
        cursor = self.conn.execute(f"select {', '.join(COLUMNS)} from customers")
        return {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in cursor.fetchall()}

    def _lsn(self) -> int:
        text = self.conn.execute("select pg_current_wal_insert_lsn()::text").fetchone()[0]
        high, low = text.split("/")
        return (int(high, 16) << 32) + int(low, 16)

    def seed(self, rows: list[dict[str, Any]]) -> None:
        """Rows that exist before the connector starts (they reach Kafka by a snapshot)."""
        for row in rows:
            self._write(row)
        self.conn.commit()

    def snapshot(self, ts: datetime) -> None:
        """Every row read at one snapshot position and time."""
        lsn, ts_ms = self._lsn(), _ms(ts)
        self.tx += 1
        for row in sorted(self.rows().values(), key=lambda r: r[KEY]):
            self._emit("r", None, row, lsn, ts_ms)

    @contextmanager
    def transaction(self, after: timedelta = timedelta(seconds=60)) -> Iterator[Connector]:
        """One transaction committed ``after`` the previous one (0: the same millisecond)."""
        self.clock += after
        self.tx += 1
        with self.conn.transaction():
            yield self
        for op, before, row, lsn in self._pending:
            self._emit(op, before, row, lsn, _ms(self.clock))
        self._pending = []
        self.states.append((self.clock, self.rows()))

    # -- statements ----------------------------------------------------------------------

    def insert(self, row: dict[str, Any]) -> None:
        stored = self._write(row)
        self._pending.append(("c", None, stored, self._lsn()))

    def update(self, key: str, **values: Any) -> None:
        old = self.rows()[key]
        sets = ", ".join(f"{c} = %s" for c in values)
        new = self._one(
            f"update customers set {sets} where {KEY} = %s returning {', '.join(COLUMNS)}",
            (*values.values(), key),
        )
        lsn = self._lsn()
        if new[KEY] != key:  # the key changed: delete of the old key, create of the new
            self._pending.append(("d", self._before(old), None, lsn))
            self._pending.append(("c", None, new, lsn))
        else:
            self._pending.append(("u", old if self.identity == "full" else None, new, lsn))

    def delete(self, key: str) -> None:
        old = self._one(
            f"delete from customers where {KEY} = %s returning {', '.join(COLUMNS)}", (key,)
        )
        self._pending.append(("d", self._before(old), None, self._lsn()))

    def _write(self, row: dict[str, Any]) -> dict[str, Any]:
        return self._one(
            f"insert into customers ({', '.join(COLUMNS)}) values "
            f"({', '.join(['%s'] * len(COLUMNS))}) returning {', '.join(COLUMNS)}",
            tuple(row[c] for c in COLUMNS),
        )

    def _one(self, sql: str, params: tuple) -> dict[str, Any]:
        return dict(zip(COLUMNS, self.conn.execute(sql, params).fetchone(), strict=True))

    def _before(self, old: dict[str, Any]) -> dict[str, Any]:
        if self.identity == "full":
            return old
        if self.with_schema:  # the schema's struct: every field, only the key set
            return {c: old[c] if c == KEY else None for c in COLUMNS}
        return {KEY: old[KEY]}

    def _emit(self, op: str, before, after, lsn: int, ts_ms: int) -> None:
        value = envelope(op, before, after, lsn, ts_ms, self.tx, self.with_schema)
        key = json.dumps({KEY: (after or before)[KEY]}).encode()
        self.messages.append(CdcMessage(key, json.dumps(value).encode()))
        if op == "d":
            self.messages.append(CdcMessage(key, None))  # the tombstone


def _ms(ts: datetime) -> int:
    return int(ts.replace(tzinfo=UTC).timestamp() * 1000)


def customer(key: str, **values: Any) -> dict[str, Any]:
    from datetime import date
    from decimal import Decimal

    return {
        KEY: key,
        "email": f"{key}@example.com",
        "full_name": f"Name {key}",
        "country": "DE",
        "credit": Decimal("10.00"),
        "signup_date": date(2026, 1, 2),
        "updated_at": datetime(2026, 11, 1, 9, 0, 0),
        "notes": None,
        **values,
    }


def run_transactions(connector: Connector, start: datetime) -> None:
    """Every transaction shape of issue 17: see the comments."""
    from decimal import Decimal

    connector.seed([customer(f"c-{i}") for i in range(1, 6)])
    # the snapshot is stamped after a commit it precedes by LSN (T1 runs while it reads)
    connector.snapshot(start + timedelta(seconds=30))
    with connector.transaction(timedelta(seconds=1)) as tx:  # T1, before the snapshot's time
        tx.update("c-1", country="FR")
    with connector.transaction() as tx:  # several changes to one row, and a new row
        tx.update("c-2", country="NL")
        tx.update("c-2", notes="moved")
        tx.update("c-2", credit=Decimal("-3.50"))
        tx.insert(customer("c-6", country="US"))
        tx.update("c-6", country="IT")
    with connector.transaction() as tx:  # a primary-key change, then the new row changes
        tx.update("c-3", customer_id="c-3b")
        tx.update("c-3b", country="FR")
    with connector.transaction() as tx:  # a row created and gone; a row deleted and re-made
        tx.insert(customer("c-7"))
        tx.delete("c-7")
        tx.delete("c-4")
        tx.insert(customer("c-4", full_name="New Four", credit=Decimal("1.25")))
    with connector.transaction() as tx:
        tx.delete("c-5")
    with connector.transaction() as tx:  # the key changes back: the old key is re-created
        tx.update("c-3b", customer_id="c-3")
    with connector.transaction(timedelta(0)) as tx:  # another commit in the same millisecond
        tx.update("c-3", notes="same ms")
        tx.update("c-1", notes="same ms")
