"""Kafka -> bronze with and without the code location's heap frozen (``freeze_loaded_heap``).

The bronze assets freeze the heap their step process loaded before they ingest.
This bench loads the code location (``lakehouse.definitions``) as a step process
does, produces N clickstream events to its own Tansu broker, then runs ``--repeat``
pairs of ``ingest_kafka_batch`` into existing empty tables: first with every object
tracked by the collector, then after ``gc.collect()`` and ``gc.freeze()``. The
Kafka ratio bench (``bench.kafka_throughput``) runs both of its sides unfrozen.
Usage: python -m bench.gc_freeze [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import statistics

from bench.common import (
    Figure,
    clickstream_topic,
    local_services,
    timed_kafka_ingest,
)


def run(events: int = 200_000, repeat: int = 3) -> list[Figure]:
    import lakehouse.definitions  # noqa: F401  the heap a step process has loaded
    from lakehouse.orchestration.heap import freeze_loaded_heap

    with local_services("kafka") as state:
        topic, n = clickstream_topic(events)

        def ingest() -> float:
            return timed_kafka_ingest(state, topic, n)

        ingest()  # warm-up
        tracked = len(gc.get_objects())
        plain, frozen = [], []
        for _ in range(repeat):
            gc.unfreeze()
            gc.collect()
            plain.append(ingest())
            gc.collect()
            freeze_loaded_heap()
            frozen.append(ingest())
        gc.unfreeze()
    name = "gc freeze"
    plain_s, frozen_s = statistics.median(plain), statistics.median(frozen)
    return [
        Figure(name, f"events ({repeat} pairs), objects tracked", f"{n:,}, {tracked:,}"),
        Figure(
            name, "ingest_kafka_batch, heap tracked", f"{plain_s:.2f} s ({n / plain_s:,.0f} ev/s)"
        ),
        Figure(name, "same, heap frozen", f"{frozen_s:.2f} s ({n / frozen_s:,.0f} ev/s)"),
        Figure(name, "speed-up", f"{plain_s / frozen_s:.2f}x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from bench.run import print_table

    print_table(run(args.events, args.repeat))


if __name__ == "__main__":
    main()
