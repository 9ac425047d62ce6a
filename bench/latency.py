"""Event -> bronze latency: one event produced, then visible in a bronze snapshot.

Path measured: the Kafka sensor's high-water probe (``kafka_highwater``) followed
by ``ingest_kafka_batch`` up to that high-water mark, as a run launched by the
sensor does, but called directly: Dagster's sensor interval (30 s minimum) and run
launch are not included. The event counts as visible once a bronze scan filtered
on its event_id returns it. ``--events`` sequential events; p50 / p95 / max.
Usage: python -m bench.latency [--events 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import Figure, create_topic, fresh_catalog, local_services


def run(events: int = 20) -> list[Figure]:
    from pyiceberg.expressions import EqualTo

    from lakehouse.declarations.sources import sources
    from lakehouse.defs.bronze.sensors import kafka_highwater
    from lakehouse.ingest.kafka.reader import ingest_kafka_batch, read_committed_offsets
    from lakehouse.settings import get_settings
    from resources.kafka import KafkaResource

    with local_services("kafka") as state:
        kafka = KafkaResource()
        source = sources().kafka_source("clickstream")
        topic = source.resolved_topic(get_settings().kafka_topic_prefix)
        create_topic(topic)
        catalog = fresh_catalog(state)
        producer = kafka.producer(linger_ms=0)
        latencies = []
        for n in range(-1, events):  # n = -1 warms up imports and creates the table
            event = {"event_id": f"lat-{n}", "event_type": "view", "user_id": "u", "ts": "t"}
            start = time.perf_counter()
            producer.send(topic, value=json.dumps(event).encode()).get(timeout=10)
            committed = read_committed_offsets(catalog, source, topic)
            until = kafka_highwater(kafka, topic, committed)
            ingest_kafka_batch(catalog, kafka, source, topic, "bench", until_offsets=until)
            table = catalog.load_table(source.bronze_table)
            found = table.scan(row_filter=EqualTo("event_id", f"lat-{n}")).to_arrow().num_rows
            assert found == 1, (n, found)
            if n >= 0:
                latencies.append(time.perf_counter() - start)
        producer.close()
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
    name = "event -> bronze latency"
    return [
        Figure(name, "path", "produce, highwater probe, ingest_kafka_batch, scan"),
        Figure(
            name,
            f"p50 / p95 / max of {events}",
            f"{statistics.median(latencies):.2f} s / {p95:.2f} s / {latencies[-1]:.2f} s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    args = parser.parse_args()
    from bench.run import print_table

    print_table(run(args.events))


if __name__ == "__main__":
    main()
