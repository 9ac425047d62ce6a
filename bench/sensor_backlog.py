"""Kafka sensor tick time with a large backlog (goal: <= 5 s with 1,000,000 messages).

Produces ``--messages`` small JSON events to a 3-partition topic, then evaluates the
clickstream Kafka sensor (the real sensor function, with the Iceberg and Kafka
resources and an ephemeral Dagster instance) ``--ticks`` times against an empty
bronze table, so every tick sees the whole backlog.
Usage: python -m bench.sensor_backlog [--messages 1000000] [--ticks 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import Figure, create_topic, local_services


def produce_small(topic: str, messages: int) -> float:
    from resources.kafka import KafkaResource

    producer = KafkaResource().producer(linger_ms=50, batch_size=512 * 1024)
    start = time.perf_counter()
    for n in range(messages):
        value = b'{"event_id":"e-%d","event_type":"page_view","user_id":"u-1","ts":"2026-11-01"}'
        producer.send(topic, value=value.replace(b"%d", b"%d" % n))
    producer.flush()
    producer.close()
    return time.perf_counter() - start


def run(messages: int = 1_000_000, ticks: int = 5) -> list[Figure]:
    import dagster as dg

    from lakehouse.declarations.sources import sources
    from lakehouse.defs.bronze.sensors import kafka_sensor
    from lakehouse.settings import get_settings
    from resources.iceberg import IcebergCatalogResource
    from resources.kafka import KafkaResource

    with local_services("kafka"):
        source = sources().kafka_source("clickstream")
        topic = source.resolved_topic(get_settings().kafka_topic_prefix)
        create_topic(topic)
        produce_s = produce_small(topic, messages)
        sensor = kafka_sensor(source)
        resources = {"iceberg": IcebergCatalogResource(), "kafka": KafkaResource()}
        times = []
        backlog = None
        with dg.instance_for_test() as instance:
            for _ in range(ticks):
                context = dg.build_sensor_context(instance=instance, resources=resources)
                start = time.perf_counter()
                result = sensor(context)
                times.append(time.perf_counter() - start)
                requests = result if isinstance(result, list) else [result]
                for request in requests:
                    if isinstance(request, dg.RunRequest):
                        backlog = request.tags.get("lakehouse/backlog")
    name = "sensor tick (1M backlog)" if messages == 1_000_000 else "sensor tick"
    warm = times[1:] or times
    return [
        Figure(name, "backlog (messages)", f"{messages:,} (produced in {produce_s:.0f} s)"),
        Figure(name, "backlog the sensor proposed", f"{int(backlog or 0):,}"),
        Figure(name, "first tick (imports, creates bronze table)", f"{times[0]:.2f} s", "<= 5 s"),
        Figure(
            name,
            f"next ticks median / max of {len(warm)}",
            f"{statistics.median(warm):.2f} s / {max(warm):.2f} s",
            "<= 5 s",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--ticks", type=int, default=5)
    args = parser.parse_args()
    from bench.run import print_table

    print_table(run(args.messages, args.ticks))


if __name__ == "__main__":
    main()
