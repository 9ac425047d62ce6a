"""Kafka -> bronze throughput against raw kafka-python consumption of the same topic.

Starts its own Tansu broker and catalog, produces N clickstream events, then runs
``--repeat`` pairs, each pair back to back so both see the same machine load:
  raw      kafka-python assign/seek/poll of every record, nothing else, timed from
           the consumer's creation as ingest's own consumer is
  ingest   lakehouse.ingest.kafka.reader.ingest_kafka_batch into a new catalog whose
           bronze and quarantine tables exist but are empty, as after a source's first
           run (parse, quarantine, Arrow, data files written while polling, one Iceberg
           commit carrying the offsets); creating the tables is not timed, as in
           bench.landing_throughput
The ratio is the median of the pairs' throughput ratios. Both sides spend most of
their time in kafka-python; which CRC32C it uses (the C ``crc32c`` package, a
dependency, or its pure-Python fallback) is printed, since it changes both by ~3x.
Usage: python -m bench.kafka_throughput [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

from kafka import TopicPartition

from bench.common import (
    Figure,
    clickstream_topic,
    local_services,
    timed_kafka_ingest,
)


def run(events: int = 200_000, repeat: int = 3) -> list[Figure]:
    from resources.kafka import KafkaResource

    with local_services("kafka") as state:
        kafka = KafkaResource()
        topic, n = clickstream_topic(events)

        def raw() -> float:
            # timed from the consumer's creation, as ingest's own consumer is
            start = time.perf_counter()
            consumer = kafka.consumer()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            setup.append(time.perf_counter() - start)
            got = 0
            while got < n:
                for records in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                    got += len(records)
            elapsed = time.perf_counter() - start
            consumer.close()
            return elapsed

        def ingest() -> float:
            return timed_kafka_ingest(state, topic, n)

        setup: list[float] = []
        ingest()  # warm-up: first-use imports and table creation are not throughput
        pairs = [(raw(), ingest()) for _ in range(repeat)]
    raw_s = statistics.median(r for r, _ in pairs)
    ingest_s = statistics.median(i for _, i in pairs)
    ratio = statistics.median(r / i for r, i in pairs)
    name = "kafka -> bronze"
    crc = "crc32c (C)" if importlib.util.find_spec("crc32c") else "pure Python"
    return [
        Figure(name, f"events ({repeat} pairs)", f"{n:,}"),
        Figure(name, "kafka-python CRC32C", crc),
        Figure(name, "raw kafka-python consume", f"{raw_s:.2f} s ({n / raw_s:,.0f} ev/s)"),
        Figure(name, "of which consumer set-up", f"{statistics.median(setup):.3f} s"),
        Figure(name, "ingest_kafka_batch", f"{ingest_s:.2f} s ({n / ingest_s:,.0f} ev/s)"),
        Figure(name, "throughput ratio ingest/raw", f"{ratio:.2f}", ">= 0.8"),
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
