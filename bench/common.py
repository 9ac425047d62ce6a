"""What every benchmark needs: its own state directory and services on free ports."""

from __future__ import annotations

import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass
class Figure:
    """One line of the results table."""

    bench: str
    measure: str
    value: str
    goal: str = ""


def machine() -> str:
    memory = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        memory = f", {kib / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.node()}: {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


@contextmanager
def local_services(*names: str) -> Iterator[str]:
    """Start the named stack services (kafka, s3) on free ports in a temporary state dir."""
    state = tempfile.mkdtemp(prefix="lakehouse-bench-")
    from lakehouse.stack import services as stack

    os.environ["LAKEHOUSE_STATE_DIR"] = state
    os.environ["LAKEHOUSE_KAFKA_PORT"] = str(stack.free_port())
    os.environ["LAKEHOUSE_S3_PORT"] = str(stack.free_port())
    os.environ["LAKEHOUSE_KAFKA_TOPIC_PREFIX"] = f"bench{uuid.uuid4().hex[:6]}."
    from lakehouse.settings import get_settings

    settings = get_settings()
    started = []
    try:
        for service in stack.services(settings):
            if service.name in names:
                stack.start(service, settings)
                started.append(service)
        yield state
    finally:
        for service in started:
            stack.stop(service, settings)


def fresh_catalog(state: str):
    """A new, empty catalog and warehouse under ``state``."""
    os.environ["LAKEHOUSE_STATE_DIR"] = tempfile.mkdtemp(dir=state)
    from resources.iceberg import IcebergCatalogResource

    return IcebergCatalogResource().load()


def create_topic(topic: str, partitions: int = 3) -> None:
    from kafka.admin import NewTopic

    from resources.kafka import KafkaResource

    admin = KafkaResource().admin()
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def produce_clickstream(topic: str, events: int) -> int:
    """The demo's clickstream (with its malformed records), about ``events`` of them."""
    from lakehouse.demo.clickstream import EVENTS_PER_SCALE, generate
    from resources.kafka import KafkaResource

    producer = KafkaResource().producer(linger_ms=20, batch_size=256 * 1024)
    n = 0
    for message in generate(max(1, events // EVENTS_PER_SCALE)):
        producer.send(topic, key=message.key, value=message.value)
        n += 1
    producer.flush()
    producer.close()
    return n


def timed_kafka_ingest(state: str, topic: str, events: int) -> float:
    """Seconds for ``ingest_kafka_batch`` to land all ``events`` of ``topic`` in a new catalog.

    Its bronze and quarantine tables exist but are empty, as after a source's first
    run: creating them is not timed.
    """
    from lakehouse.declarations.layouts import QUARANTINE
    from lakehouse.declarations.sources import sources
    from lakehouse.ingest.kafka.reader import ingest_kafka_batch
    from lakehouse.tables.commits import ensure_table
    from resources.kafka import KafkaResource

    source = sources().kafka_source("clickstream")
    catalog = fresh_catalog(state)
    ensure_table(catalog, source.bronze_table, source.layout)
    ensure_table(catalog, source.quarantine_table, QUARANTINE)
    start = time.perf_counter()
    batch = ingest_kafka_batch(
        catalog, KafkaResource(), source, topic, "bench", max_records=events + 1
    )
    elapsed = time.perf_counter() - start
    assert batch.records_read == events, (batch.records_read, events)
    return elapsed


def clickstream_topic(events: int) -> tuple[str, int]:
    """A new topic holding ``events`` clickstream events: (its name, events produced)."""
    topic = f"bench.{uuid.uuid4().hex[:6]}"
    create_topic(topic)
    return topic, produce_clickstream(topic, events)
