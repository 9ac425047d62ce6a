"""Incremental silver: a run's cost follows what arrived, not what is stored.

Part 1: one day of new data (``--events`` clickstream events and ``--changes`` Debezium
changes to ``customers``) applied by the silver builds of ``silver.page_views`` and
``silver.customers`` (+ history), on top of 1 day and of ``--days`` days of history built
the same way. Each measured build runs in a fresh process (as a step does), timed
around the builds, with the process's peak RSS; ``--repeat`` new days per history, the
median reported.

Part 2: ``silver.page_views`` with one new day of events on top of ``--big`` events of
history (a day's volume per day, so 1M and 10M events are 50 and 500 daily partitions),
written directly as a previous build would have left them.

The last line reads ``incremental ratio 30d/1d: <x.xx>; peak RSS 1d/30d: <a>/<b> MiB``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from bench.common import Figure, fresh_catalog, machine

START = datetime(2026, 1, 1, tzinfo=UTC)
PAGES = ["/", "/search", "/cart", "/checkout", "/account"]


# --- data -----------------------------------------------------------------------------


def _events(
    day: int, n: int, rng: random.Random, first: int, start: datetime = START
) -> list[bytes]:
    """A day of clickstream events: page views mostly, a few late, a few re-sent."""
    out = []
    base = start + timedelta(days=day)
    for i in range(n):
        at = base + timedelta(seconds=int(86_399 * i / n))
        if rng.random() < 0.03 and day:  # late: from the day before
            at -= timedelta(hours=rng.randint(1, 12))
        user = f"u-{rng.randint(0, 5_000):05d}"
        event = {
            "event_id": f"e-{first + i:09d}",
            "event_type": rng.choices(["page_view", "add_to_cart"], weights=[9, 1])[0],
            "user_id": user,
            "session_id": f"s-{user}-{day}",
            "page": rng.choice(PAGES),
            "product_id": None,
            "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        value = json.dumps(event).encode()
        out.append(value)
        if rng.random() < 0.01:
            out.append(value)  # an at-least-once producer's resend
    return out


class Customers:
    """A customers table changing by ``--changes`` a day: updates, inserts, some deletes."""

    def __init__(
        self, rng: random.Random, keys: int, inserts: float = 0.15, deletes: float = 0.05
    ) -> None:
        self.rng, self.rows, self.lsn, self.next_key = rng, {}, 1_000, 0
        self.initial, self.inserts, self.deletes = keys, inserts, deletes

    def _row(self, key: str, at: datetime) -> dict:
        rng = self.rng
        return {
            "customer_id": key,
            "email": f"{key}@example.com",
            "full_name": f"Name {key}",
            "country": rng.choice(["DE", "FR", "NL", "US", "IT"]),
            "credit": Decimal(rng.randint(0, 99_999)) / 100,
            "signup_date": date(2025, 1, 1),
            "updated_at": at.replace(tzinfo=None),
            "notes": "n",
        }

    def day(self, day: int, n: int) -> list[bytes]:
        from lakehouse.demo.cdc import envelope

        out, base = [], START + timedelta(days=day)
        count = self.initial if day == 0 and not self.rows else n
        for i in range(count):
            at = base + timedelta(seconds=int(86_399 * i / count))
            self.lsn += 3
            ts = int(at.timestamp() * 1000)
            roll = self.rng.random()
            if not self.rows or roll < self.inserts or (day == 0 and len(self.rows) < self.initial):
                key = f"c-{self.next_key:07d}"
                self.next_key += 1
                self.rows[key] = self._row(key, at)
                value = envelope("c", None, self.rows[key], self.lsn, ts, self.lsn, False)
            elif roll < self.inserts + self.deletes:
                key = self.rng.choice(list(self.rows))
                value = envelope("d", self.rows.pop(key), None, self.lsn, ts, self.lsn, False)
            else:
                key = self.rng.choice(list(self.rows))
                self.rows[key] = {**self._row(key, at), "email": self.rows[key]["email"]}
                value = envelope("u", None, self.rows[key], self.lsn, ts, self.lsn, False)
            out.append(json.dumps(value).encode())
        return out


def _land(
    catalog, source, values: list[bytes], day: int, offset: int, start: datetime = START
) -> int:
    import pyarrow as pa

    from lakehouse.ingest.kafka.decode import bronze_row
    from lakehouse.tables.commits import append_with_position, ensure_table

    at = start + timedelta(days=day, hours=23)
    rows = []
    for value in values:
        rows.append(
            {
                **bronze_row(source, SimpleNamespace(value=value, key=None)),
                "_source": source.name,
                "_kafka_topic": source.topic,
                "_kafka_partition": 0,
                "_kafka_offset": offset,
                "_kafka_timestamp": at,
                "_ingested_at": at,
                "_run_id": f"bronze-{day}",
            }
        )
        offset += 1
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    table = pa.Table.from_pylist(rows, schema=source.layout.arrow_schema())
    append_with_position(bronze, table, source.topic, {"0": offset}, f"bronze-{day}")
    return offset


# --- the measured step ----------------------------------------------------------------


def _builds(catalog):
    from lakehouse.declarations.sources import sources
    from lakehouse.defs.silver.builds import silver_shape
    from lakehouse.quality.contracts import contract_for
    from lakehouse.silver.cdc import CdcBuild
    from lakehouse.silver.page_views import PageViewsBuild

    clicks, customers = sources().kafka_source("clickstream"), sources().cdc_source("customers")
    views, current = contract_for("silver.page_views"), contract_for("silver.customers")
    return (
        PageViewsBuild(catalog, clicks, silver_shape(clicks, views), "bench", contract=views),
        CdcBuild(catalog, customers, silver_shape(customers, current), "bench", contract=current),
    )


def child(state: str, which: str) -> None:
    """Run the silver builds once in this (fresh) process; print time and peak RSS."""
    import time

    # the peak RSS a forked child starts with is its parent's: reset it (Linux >= 4.0)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    os.environ["LAKEHOUSE_STATE_DIR"] = state
    from resources.iceberg import IcebergCatalogResource

    catalog = IcebergCatalogResource().load()
    page_views, cdc = _builds(catalog)
    started = time.perf_counter()
    modes = [page_views.run().plan.mode]
    split = {"page_views": time.perf_counter() - started}
    if which == "both":
        modes.append(cdc.run().plan.mode)
        split["customers"] = time.perf_counter() - started - split["page_views"]
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mib": _peak_mib(), "modes": modes, **split}))


def _peak_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _measure(state: str, which: str = "both") -> dict:
    env = {**os.environ, "LAKEHOUSE_STATE_DIR": state}
    out = subprocess.run(
        [sys.executable, "-m", "bench.incremental", "--child", state, "--which", which],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def history_run(root: str, days: int, args) -> list[dict]:
    """``days`` of history built in full, then ``--repeat`` new days measured one by one."""
    from lakehouse.declarations.sources import sources

    catalog = fresh_catalog(root)
    state = os.environ["LAKEHOUSE_STATE_DIR"]
    rng = random.Random(days)
    customers = Customers(rng, args.customers, args.inserts, args.deletes)
    clicks, cdc = sources().kafka_source("clickstream"), sources().cdc_source("customers")
    click_offset = cdc_offset = first = 0
    page_views, changes = _builds(catalog)
    for day in range(days + args.repeat):
        if day == days:
            page_views.run()  # history in full, not timed
            changes.run()
            measured = []
        events = _events(day, args.events, rng, first)
        first += args.events
        click_offset = _land(catalog, clicks, events, day, click_offset)
        cdc_offset = _land(catalog, cdc, customers.day(day, args.changes), day, cdc_offset)
        if day >= days:
            measured.append(_measure(state))
    return measured


def big_page_views(root: str, events: int, per_day: int) -> dict:
    """silver.page_views holding ``events`` already, one new day of ``per_day`` on top.

    History is written directly, as earlier builds would have left bronze and silver
    (silver recording the bronze snapshot it was built from), so that 10M events take
    seconds to set up rather than a full build.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
    from lakehouse.declarations.sources import sources
    from lakehouse.tables.commits import append_with_position, ensure_table
    from lakehouse.tables.increments import INCREMENTAL, Plan
    from lakehouse.transforms.masking import Masker

    catalog = fresh_catalog(root)
    state = os.environ["LAKEHOUSE_STATE_DIR"]
    source = sources().kafka_source("clickstream")
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    silver = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    shape = _builds(catalog)[0].shape
    masker = Masker.from_settings()
    days = max(1, events // per_day)
    step = days * 86_400 / events
    # history up to yesterday: the contract warns about events dated in the future
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days + 1)
    written = 0
    while written < events:
        n = min(1_000_000, events - written)
        numbers = pa.array(range(written, written + n), pa.int64())
        event_ids = pc.binary_join_element_wise("e-", pc.cast(numbers, pa.string()), "")
        seconds = pc.cast(pc.floor(pc.multiply(pc.cast(numbers, pa.float64()), step)), pa.int64())
        micros = pc.cast(pc.multiply(seconds, 1_000_000), pa.duration("us"))
        ts = pc.assume_timezone(
            pc.add(pa.scalar(start.replace(tzinfo=None), pa.timestamp("us")), micros), "UTC"
        )
        users = pc.binary_join_element_wise(
            "u-", pc.cast(pc.bit_wise_and(numbers, 4095), pa.string()), ""
        )
        iso = pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S.000Z")
        payload = pc.binary_join_element_wise(
            '{"event_id": "',
            event_ids,
            '", "event_type": "page_view", "user_id": "',
            users,
            '", "session_id": "s", "page": "/", "product_id": null, "ts": "',
            iso,
            '"}',
            "",
        )
        at = pa.repeat(pa.scalar(start + timedelta(days=days), pa.timestamp("us", tz="UTC")), n)
        bronze_rows = pa.table(
            {
                "event_id": event_ids,
                "event_type": pa.repeat(pa.scalar("page_view"), n),
                "user_id": users,
                "event_ts": iso,
                "payload": payload,
                "_source": pa.repeat(pa.scalar("clickstream"), n),
                "_kafka_topic": pa.repeat(pa.scalar("events.clickstream"), n),
                "_kafka_partition": pa.repeat(pa.scalar(0, pa.int32()), n),
                "_kafka_offset": numbers,
                "_kafka_timestamp": at,
                "_ingested_at": at,
                "_run_id": pa.repeat(pa.scalar("history"), n),
            }
        )
        append_with_position(bronze, bronze_rows, source.topic, {"0": written + n}, "history")
        hashed = pa.array(masker.mask_column(users.to_pylist(), "hash"), pa.string())
        silver_rows = pa.table(
            {
                "event_id": event_ids,
                "user_id": hashed,
                "session_id": pa.repeat(pa.scalar("s"), n),
                "page": pa.repeat(pa.scalar("/"), n),
                "product_id": pa.nulls(n, pa.string()),
                "event_ts": ts,
                "event_date": pc.cast(ts, pa.date32()),
                "_kafka_partition": pa.repeat(pa.scalar(0, pa.int32()), n),
                "_kafka_offset": numbers,
            }
        )
        plan = Plan(INCREMENTAL, "history", bronze.current_snapshot())
        silver.append(silver_rows, snapshot_properties=plan.properties("history", shape))
        written += n
    new_day = _events(days, per_day, random.Random(1), events, start)
    _land(catalog, source, new_day, days, events, start)
    return _measure(state, "page_views")


def run(argv: list[str] | None = None) -> list[Figure]:
    """The figures (``make bench`` runs it with the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--changes", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--inserts", type=float, default=0.15, help="share of new keys")
    parser.add_argument("--deletes", type=float, default=0.05, help="share of deletes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", default="1000000,10000000", help="page-view histories")
    parser.add_argument("--child")
    parser.add_argument("--which", default="both")
    args = parser.parse_args(argv or [])
    if args.child:
        child(args.child, args.which)
        return []
    root = tempfile.mkdtemp(prefix="lakehouse-bench-incremental-")
    figures = []
    results = {}
    for days in (1, args.days):
        measured = history_run(root, days, args)
        modes = {m for r in measured for m in r["modes"]}
        results[days] = (
            statistics.median(r["seconds"] for r in measured),
            max(r["peak_mib"] for r in measured),
        )
        parts = ", ".join(
            f"{name} {statistics.median(r[name] for r in measured):.2f} s"
            for name in ("page_views", "customers")
        )
        figures.append(
            Figure(
                "incremental",
                f"silver run, 1 new day on {days}d history ({parts})",
                f"{results[days][0]:.2f} s, peak {results[days][1]:.0f} MiB "
                f"({'/'.join(sorted(modes))})",
            )
        )
    for events in (int(e) for e in args.big.split(",") if e):
        big = big_page_views(root, events, args.events)
        figures.append(
            Figure(
                "incremental",
                f"silver.page_views, {args.events:,} new events on {events:,} of history",
                f"{big['seconds']:.2f} s, peak {big['peak_mib']:.0f} MiB ({big['modes'][0]})",
            )
        )
    ratio = results[args.days][0] / results[1][0]
    figures.append(Figure("incremental", f"ratio {args.days}d/1d", f"{ratio:.2f}", "<= 1.2"))
    from bench.run import print_table

    print_table(figures)
    print(
        f"incremental ratio {args.days}d/1d: {ratio:.2f}; peak RSS 1d/{args.days}d: "
        f"{results[1][1]:.0f}/{results[args.days][1]:.0f} MiB"
    )
    return figures


if __name__ == "__main__":
    print(machine(), file=sys.stderr)
    run(sys.argv[1:])
