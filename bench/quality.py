"""Cost of the quality layer on silver.page_views: transform alone vs + PII masking + contract.

In process, no services: N generated clickstream events become a bronze-shaped Arrow
table; then (median of --repeat runs)
  transform  build_page_views (type, dedup)
  + mask     mask_frame (HMAC-SHA256 of user_id and session_id)
  + contract enforce (pandera, every rule, quarantine split)
Usage: python -m bench.quality [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import pyarrow as pa


def _bronze(events: int) -> pa.Table:
    from lakehouse.demo.clickstream import EVENTS_PER_SCALE, generate

    rows = []
    for offset, message in enumerate(generate(max(1, events // EVENTS_PER_SCALE))):
        try:
            event = json.loads(message.value)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        rows.append(
            {
                "event_id": event.get("event_id"),
                "event_type": event.get("event_type"),
                "user_id": event.get("user_id"),
                "event_ts": event.get("ts"),
                "payload": message.value.decode(),
                "_kafka_topic": "bench",
                "_kafka_partition": offset % 3,
                "_kafka_offset": offset,
            }
        )
    return pa.Table.from_pylist(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from lakehouse.declarations.sources import sources
    from lakehouse.quality.contracts import PAGE_VIEWS
    from lakehouse.quality.policy import enforce
    from lakehouse.transforms.masking import Masker, mask_frame
    from lakehouse.transforms.page_views import build_page_views

    bronze = _bronze(args.events)
    pii = sources().kafka_source("clickstream").pii
    masker = Masker(b"bench-key")
    timings: dict[str, list[float]] = {"transform": [], "mask": [], "contract": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        silver = build_page_views(bronze).silver.to_pandas()
        timings["transform"].append(time.perf_counter() - t)
        t = time.perf_counter()
        masked = mask_frame(silver, pii, masker)
        timings["mask"].append(time.perf_counter() - t)
        t = time.perf_counter()
        enforced = enforce(PAGE_VIEWS, masked)
        timings["contract"].append(time.perf_counter() - t)
    median = {k: statistics.median(v) for k, v in timings.items()}
    print(f"{platform.node()} python {platform.python_version()}: {bronze.num_rows:,} bronze rows,")
    print(f"{len(silver):,} page views, quality score {enforced.quality_score():.4f}")
    print("| step | median s | rows/s |")
    print("|---|---|---|")
    for step, seconds in median.items():
        print(f"| {step} | {seconds:.2f} | {len(silver) / seconds:,.0f} |")
    overhead = (median["mask"] + median["contract"]) / median["transform"]
    print(f"| quality overhead (mask + contract) / transform | {overhead:.2f}x | |")


if __name__ == "__main__":
    main()
