"""Event -> gold latency with the real daemon: `lakehouse dev` running, events produced.

Starts `lakehouse dev` (its own Tansu, moto, webserver, daemon with the sensors and the
automation sensor) in a temporary state directory on free ports, publishes the demo
data and waits until the sensors and automation have carried it to gold, then,
``--events`` times, one at a time, produces one page view for today to the clickstream
topic and measures how long until ``gold.daily_page_views`` counts it (today's row
grows by one). Nothing is called directly: the sensors, the run queue, run launches and
the automation conditions are what moves each event. p50 / p95 / max are printed.

Usage: python -m bench.live_latency [--events 10] [--timeout 300]
The last line reads ``live latency event->gold: p50 <s> s, p95 <s> s, max <s> s``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from bench.common import Figure, machine


def _gold_today(table: str, column: str, day_column: str) -> Decimal | int | None:
    """Today's value of ``column`` in ``table``, or None while the table or row is missing."""
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import EqualTo

    from resources.iceberg import IcebergCatalogResource

    today = datetime.now(UTC).date()
    try:
        gold = IcebergCatalogResource().load().load_table(table)
    except NoSuchTableError:
        return None
    rows = gold.scan(row_filter=EqualTo(day_column, today.isoformat())).to_arrow()
    values = rows[column].to_pylist() if rows.num_rows else []
    return values[0] if values else None


def _page_view() -> tuple[bytes, bytes]:
    user = f"u-live-{uuid.uuid4().hex[:6]}"
    event = {
        "event_id": f"e-live-{uuid.uuid4().hex}",
        "event_type": "page_view",
        "user_id": user,
        "session_id": f"s-{user}",
        "page": "/",
        "product_id": None,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return user.encode(), json.dumps(event).encode()


def _wait(what, until, timeout: float, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if until(value):
            return value
        time.sleep(poll)
    raise TimeoutError(f"not reached in {timeout:.0f} s")


def _free_port() -> int:
    from lakehouse.stack.services import free_port

    return free_port()


def _start_dev(state: str, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "LAKEHOUSE_STATE_DIR": state,
        "LAKEHOUSE_KAFKA_PORT": str(_free_port()),
        "LAKEHOUSE_S3_PORT": str(_free_port()),
        "LAKEHOUSE_KAFKA_TOPIC_PREFIX": f"live{uuid.uuid4().hex[:6]}.",
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("LAKEHOUSE_")})
    log = open(os.path.join(state, "dev.log"), "w")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "lakehouse"), "dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _wait(lambda: _up(port), bool, timeout=300, poll=1)
    return process


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
            return True
    except OSError:
        return False


def run(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv or [])
    state = tempfile.mkdtemp(prefix="lakehouse-bench-live-")
    port = _free_port()
    started = time.monotonic()
    process = _start_dev(state, port)
    try:
        from lakehouse.declarations.sources import sources
        from lakehouse.demo.load import publish_demo
        from lakehouse.settings import get_settings
        from resources.kafka import KafkaResource

        # the demo data first, through the same sensors and automation, until it is in
        # gold and no run is left (today's row may not exist yet: the first event makes it)
        publish_demo(get_settings(), 1)
        _wait(
            lambda: _exists("gold.daily_page_views") and not _busy(state),
            bool,
            timeout=args.timeout * 3,
            poll=2,
        )
        settle = time.monotonic() - started
        topic = (
            sources().kafka_source("clickstream").resolved_topic(get_settings().kafka_topic_prefix)
        )
        producer = KafkaResource().producer()
        latencies = []
        for _ in range(args.events):
            before = _gold_today("gold.daily_page_views", "page_views", "view_date") or 0
            key, value = _page_view()
            sent = time.monotonic()
            producer.send(topic, key=key, value=value).get(timeout=30)
            _wait(
                lambda: _gold_today("gold.daily_page_views", "page_views", "view_date") or 0,
                lambda count, before=before: count > before,
                timeout=args.timeout,
            )
            latencies.append(time.monotonic() - sent)
            print(f"event -> gold.daily_page_views: {latencies[-1]:.1f} s", file=sys.stderr)
        producer.close()
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    figures = [
        Figure("live_latency", "lakehouse dev up, demo data in gold", f"{settle:.0f} s"),
        Figure(
            "live_latency",
            f"clickstream event -> gold.daily_page_views ({len(ordered)} events)",
            f"p50 {p50:.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s",
            "<= 60 s",
        ),
    ]
    from bench.run import print_table

    print_table(figures)
    print(f"live latency event->gold: p50 {p50:.1f} s, p95 {p95:.1f} s, max {ordered[-1]:.1f} s")
    return figures


def _busy(state: str) -> bool:
    """Runs queued or in progress on the dev instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = os.path.join(state, "dagster")
    with dg.DagsterInstance.get() as instance:
        statuses = [
            dg.DagsterRunStatus.QUEUED,
            dg.DagsterRunStatus.NOT_STARTED,
            dg.DagsterRunStatus.STARTING,
            dg.DagsterRunStatus.STARTED,
        ]
        return bool(instance.get_runs(filters=dg.RunsFilter(statuses=statuses), limit=1))


def _exists(table: str) -> bool:
    from resources.iceberg import IcebergCatalogResource

    return IcebergCatalogResource().load().table_exists(table)


if __name__ == "__main__":
    print(machine(), file=sys.stderr)
    run(sys.argv[1:])
