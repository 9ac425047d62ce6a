"""Kafka -> bronze throughput against raw kafka-python consumption of the same topic.

Starts its own Tansu broker and catalog in a temporary directory, produces N
clickstream events, then measures (median of --repeat runs):
  raw      kafka-python assign/seek/poll of every record, nothing else
  ingest   lakehouse.ingest.kafka_events.ingest_kafka_batch into a fresh bronze table
           (parse, quarantine, Arrow, Iceberg commit with offsets)
Usage: python -m bench.run [--events 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import uuid

from kafka import TopicPartition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="lakehouse-bench-")
    from lakehouse.stack import services as stack

    os.environ["LAKEHOUSE_STATE_DIR"] = state
    os.environ["LAKEHOUSE_KAFKA_PORT"] = str(stack.free_port())
    os.environ["LAKEHOUSE_S3_PORT"] = str(stack.free_port())
    from lakehouse.demo.clickstream import EVENTS_PER_SCALE, generate
    from lakehouse.ingest.kafka_events import ingest_kafka_batch
    from lakehouse.settings import get_settings
    from lakehouse.sources import sources
    from resources.iceberg import IcebergCatalogResource
    from resources.kafka import KafkaResource

    settings = get_settings()
    kafka_service = next(s for s in stack.services(settings) if s.name == "kafka")
    stack.start(kafka_service, settings)
    try:
        kafka = KafkaResource()
        topic = f"bench.{uuid.uuid4().hex[:6]}"
        admin = kafka.admin()
        from kafka.admin import NewTopic

        admin.create_topics([NewTopic(topic, 3, 1)])
        admin.close()
        scale = max(1, args.events // EVENTS_PER_SCALE)
        producer = kafka.producer(linger_ms=20, batch_size=256 * 1024)
        t = time.perf_counter()
        n = 0
        for message in generate(scale):
            producer.send(topic, key=message.key, value=message.value)
            n += 1
        producer.flush()
        produce_s = time.perf_counter() - t

        def raw() -> float:
            consumer = kafka.consumer()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            got = 0
            start = time.perf_counter()
            while got < n:
                for records in consumer.poll(timeout_ms=1000, max_records=50_000).values():
                    got += len(records)
            elapsed = time.perf_counter() - start
            consumer.close()
            return elapsed

        def ingest() -> float:
            os.environ["LAKEHOUSE_STATE_DIR"] = tempfile.mkdtemp(dir=state)
            source = sources().kafka_source("clickstream")
            catalog = IcebergCatalogResource().load()
            start = time.perf_counter()
            batch = ingest_kafka_batch(catalog, kafka, source, topic, "bench", max_records=n + 1)
            elapsed = time.perf_counter() - start
            assert batch.records_read == n, (batch.records_read, n)
            return elapsed

        raw_s = statistics.median(raw() for _ in range(args.repeat))
        ingest_s = statistics.median(ingest() for _ in range(args.repeat))
    finally:
        stack.stop(kafka_service, settings)

    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"events: {n:,} ({produce_s:.1f} s to produce)")
    print(f"{'path':<28}{'seconds':>10}{'events/s':>14}")
    print(f"{'raw kafka-python consume':<28}{raw_s:>10.2f}{n / raw_s:>14,.0f}")
    print(f"{'kafka -> bronze (iceberg)':<28}{ingest_s:>10.2f}{n / ingest_s:>14,.0f}")
    print(f"ratio ingest/raw throughput: {raw_s / ingest_s:.2f} (goal >= 0.8)")


if __name__ == "__main__":
    main()
