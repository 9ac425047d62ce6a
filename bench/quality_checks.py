"""Time of the silver quality checks: full (every row) vs incremental (what changed).

Real Tansu, moto and Iceberg catalog; the demo's clickstream and customers changelog at
``--scale``. Three runs on one Dagster instance:
  first        the lakehouse job builds silver.page_views and silver.customers(+history);
               the checks have no earlier evaluation, so they read everything
  incremental  ``--new`` page views on a new day and one customer update arrive; the job
               runs again and the checks read the new day / the updated key
  full         the same checks alone, config ``full: true`` (what the old checks did)
Reported: each check step's wall time (Dagster step start to end, in process).
Usage: python -m bench.quality_checks [--scale 5] [--new 200]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta

SELECTION = [
    ["bronze", "clickstream"],
    ["quarantine", "clickstream"],
    ["silver", "page_views"],
    ["quarantine", "page_views"],
    ["bronze", "cdc_customers"],
    ["quarantine", "cdc_customers"],
    ["silver", "customers"],
    ["silver", "customers_history"],
    ["quarantine", "customers"],
]
CHECKED = (["silver", "page_views"], ["silver", "customers"], ["silver", "customers_history"])


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    start: dict[str, float] = {}
    out: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or not record.step_key:
            continue
        if event.event_type_value == "STEP_START":
            start[record.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            out[record.step_key] = record.timestamp - start.get(record.step_key, record.timestamp)
    return {k: v for k, v in out.items() if "contract" in k or "reconcile" in k or "matches" in k}


def _publish_new_day(settings, events: int) -> None:
    from lakehouse.declarations.sources import sources
    from resources.kafka import KafkaResource

    topic = sources().kafka_source("clickstream").resolved_topic(settings.kafka_topic_prefix)
    day = datetime(2026, 11, 20, 8, tzinfo=UTC)
    producer = KafkaResource().producer()
    try:
        for n in range(events):
            ts = (day + timedelta(seconds=17 * n)).isoformat().replace("+00:00", "Z")
            event = {
                "event_id": f"bench-{n:06d}",
                "event_type": "page_view",
                "user_id": f"u-{n % 50:05d}",
                "session_id": f"s-{n % 20}",
                "page": "/search",
                "product_id": None,
                "ts": ts,
            }
            producer.send(topic, key=event["user_id"].encode(), value=json.dumps(event).encode())
        producer.flush()
    finally:
        producer.close()


def _update_one_customer(settings, catalog) -> None:
    from lakehouse.declarations.sources import sources
    from resources.kafka import KafkaResource

    source = sources().cdc_source("customers")
    log = catalog.load_table(source.bronze_table).scan().to_arrow().to_pylist()
    changes = [r for r in log if r["op"] in ("c", "u", "r") and r["payload"]]
    latest = max(changes, key=lambda r: r["lsn"])
    document = json.loads(latest["payload"])
    change = document.get("payload", document)
    change["before"], change["op"] = dict(change["after"]), "u"
    change["after"]["country"] = "NL"
    change["source"]["lsn"] = latest["lsn"] + 1_000
    change["ts_ms"] = change["source"]["ts_ms"] = change["ts_ms"] + 60_000
    producer = KafkaResource().producer()
    try:
        topic = source.resolved_topic(settings.kafka_topic_prefix)
        producer.send(topic, key=latest["key"].encode(), value=json.dumps(document).encode())
        producer.flush()
    finally:
        producer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--new", type=int, default=200)
    args = parser.parse_args()

    from bench.common import local_services, machine

    with local_services("kafka", "s3"):
        os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="lakehouse-bench-dagster-")
        import dagster as dg

        from lakehouse.demo.load import publish_cdc, publish_clickstream
        from lakehouse.settings import get_settings
        from lakehouse.stack.provision import provision
        from resources.iceberg import IcebergCatalogResource

        settings = get_settings()
        provision(settings)
        published = publish_clickstream(settings, args.scale), publish_cdc(settings, args.scale)
        from lakehouse.definitions import defs

        job = defs.resolve_job_def("lakehouse")
        selection = [dg.AssetKey(k) for k in SELECTION]
        timings: dict[str, dict[str, float]] = defaultdict(dict)
        with dg.instance_for_test() as instance:
            first = job.execute_in_process(instance=instance, asset_selection=selection)
            timings["first"] = _step_seconds(instance, first.run_id)
            catalog = IcebergCatalogResource().load()
            rows = {
                ".".join(k): catalog.load_table(".".join(k)).scan().to_arrow().num_rows
                for k in CHECKED
            }
            _publish_new_day(settings, args.new)
            _update_one_customer(settings, catalog)
            second = job.execute_in_process(instance=instance, asset_selection=selection)
            timings["incremental"] = _step_seconds(instance, second.run_id)
            checks = {
                c
                for c in defs.resolve_asset_graph().asset_check_keys
                if list(c.asset_key.path) in [list(k) for k in CHECKED]
            }
            checks = {c for c in checks if "freshness" not in c.name}
            only = defs.resolve_implicit_global_asset_job_def().get_subset(
                asset_check_selection=checks, asset_selection=set()
            )
            ops = {node.name for node in only.graph.node_defs}
            full = only.execute_in_process(
                instance=instance,
                run_config={"ops": {op: {"config": {"full": True}} for op in ops}},
                raise_on_error=False,
            )
            timings["full"] = _step_seconds(instance, full.run_id)
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"published {published[0]:,} events, {published[1]:,} changes; rows: {rows}")
    print(f"then {args.new} page views on a new day and 1 customer update")
    print("| check step | first run (full) | incremental | full (config) |")
    print("|---|---|---|---|")
    for step in sorted(timings["full"]):
        cells = [timings[k].get(step) for k in ("first", "incremental", "full")]
        shown = ["" if c is None else f"{c:.2f} s" for c in cells]
        print(f"| {step} | {' | '.join(shown)} |")
    totals = [sum(timings[k].values()) for k in ("first", "incremental", "full")]
    print(f"| **all checks** | {' | '.join(f'{t:.2f} s' for t in totals)} |")


if __name__ == "__main__":
    main()
