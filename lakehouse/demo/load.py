"""Publish the demo data to Kafka, the landing bucket and (if reachable) PostgreSQL.

Idempotent per service lifetime: a topic that already holds records and files
that already exist are left alone, so running the demo twice adds nothing.

The local broker and S3 server keep data in memory, while the Iceberg tables persist.
So that a restarted stack (``lakehouse up`` or ``dev`` after ``demo``) does not look
like a recreated topic to ingestion (bronze's committed offsets beyond the broker's
end), the demo records its scale and the stack republishes the same deterministic
data when it starts its services fresh: it lands at the same offsets and keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kafka import TopicPartition

from lakehouse.declarations.sources import sources
from lakehouse.demo.cdc import generate_shop_changes
from lakehouse.demo.clickstream import generate
from lakehouse.demo.partner_files import marketing_spend_files
from lakehouse.demo.shop import postgres_reachable, seed_shop
from lakehouse.settings import LakehouseSettings
from resources.kafka import KafkaResource
from resources.s3 import S3Resource


@dataclass
class DemoLoad:
    events_produced: int = 0
    changes_produced: int = 0
    files_uploaded: int = 0
    postgres: dict[str, int] | None = None
    notes: list[str] = field(default_factory=list)


def topic_has_records(kafka: KafkaResource, topic: str) -> bool:
    consumer = kafka.consumer()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        return any(offset > 0 for offset in consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def publish_clickstream(settings: LakehouseSettings, scale: int = 1) -> int:
    """Produce the clickstream unless the topic already holds records; return the count sent."""
    kafka = KafkaResource()
    topic = sources().kafka_source("clickstream").resolved_topic(settings.kafka_topic_prefix)
    if topic_has_records(kafka, topic):
        return 0
    producer = kafka.producer()
    sent = 0
    try:
        for message in generate(scale):
            producer.send(topic, key=message.key, value=message.value)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def publish_cdc(settings: LakehouseSettings, scale: int = 1) -> int:
    """Produce the simulated shop changelog (one topic per CDC source) to empty topics.

    The changes span the clickstream's three days, so gold joins orders to visits.
    """
    kafka = KafkaResource()
    topics = {
        s.name: s.resolved_topic(settings.kafka_topic_prefix)
        for s in sources().cdc
        if not topic_has_records(kafka, s.resolved_topic(settings.kafka_topic_prefix))
    }
    if not topics:
        return 0
    steps = 2_500 * scale
    messages, _ = generate_shop_changes(snapshot=60, steps=steps, mean_gap_s=max(1, 90 // scale))
    producer = kafka.producer()
    sent = 0
    try:
        for message in messages:
            if message.table in topics:
                producer.send(topics[message.table], key=message.key, value=message.value)
                sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def publish_landing_files(settings: LakehouseSettings, scale: int = 1) -> int:
    """Upload the partner files that are not in the bucket yet; return how many."""
    s3 = S3Resource().client()
    uploaded = 0
    for key, body in marketing_spend_files(scale).items():
        existing = s3.list_objects_v2(Bucket=settings.landing_bucket, Prefix=key).get("KeyCount", 0)
        if not existing:
            s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=body)
            uploaded += 1
    return uploaded


def demo_marker(settings: LakehouseSettings) -> Path:
    return settings.state_path / "demo.json"


def loaded_scale(settings: LakehouseSettings) -> int | None:
    """The scale of the demo this state holds (None: no demo loaded)."""
    marker = demo_marker(settings)
    return json.loads(marker.read_text())["scale"] if marker.exists() else None


def restore_demo(settings: LakehouseSettings) -> DemoLoad | None:
    """Republish the demo's data to freshly started local services (None: no demo loaded)."""
    scale = loaded_scale(settings)
    if scale is None:
        return None
    return publish_demo(settings, scale, database=False)  # PostgreSQL keeps its rows


def publish_demo(settings: LakehouseSettings, scale: int = 1, database: bool = True) -> DemoLoad:
    marker = demo_marker(settings)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"scale": scale}))
    result = DemoLoad()
    result.events_produced = publish_clickstream(settings, scale)
    if not result.events_produced:
        result.notes.append("the clickstream topic already holds records: not produced again")
    result.changes_produced = publish_cdc(settings, scale)
    result.files_uploaded = publish_landing_files(settings, scale)
    if database and postgres_reachable(settings.postgres_dsn):
        result.postgres = seed_shop(settings.postgres_dsn)
    elif database:
        result.notes.append("PostgreSQL not reachable: shop database skipped (Kafka and S3 only)")
    return result
