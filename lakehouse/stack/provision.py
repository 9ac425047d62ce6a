"""Idempotent creation of what the pipelines expect: topics, buckets, namespaces."""

from __future__ import annotations

from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from lakehouse.catalog_config import NAMESPACES
from lakehouse.declarations.sources import sources
from lakehouse.settings import LakehouseSettings
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource


def provision(settings: LakehouseSettings) -> dict[str, list[str]]:
    """Create topics, the landing bucket and the Iceberg namespaces if missing."""
    settings.state_path.mkdir(parents=True, exist_ok=True)
    created: dict[str, list[str]] = {"topics": [], "buckets": [], "namespaces": []}

    admin = KafkaResource().admin()
    try:
        existing = set(admin.list_topics())
        for source in (*sources().kafka, *sources().cdc):
            topic = source.resolved_topic(settings.kafka_topic_prefix)
            if topic not in existing:
                try:
                    admin.create_topics(
                        [NewTopic(topic, settings.kafka_topic_partitions, replication_factor=1)]
                    )
                    created["topics"].append(topic)
                except TopicAlreadyExistsError:
                    pass
    finally:
        admin.close()

    s3 = S3Resource().client()
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if settings.landing_bucket not in buckets:
        s3.create_bucket(Bucket=settings.landing_bucket)
        created["buckets"].append(settings.landing_bucket)

    catalog = IcebergCatalogResource().load()
    existing_ns = {ns[0] for ns in catalog.list_namespaces()}
    for namespace in NAMESPACES:
        if namespace not in existing_ns:
            catalog.create_namespace_if_not_exists(namespace)
            created["namespaces"].append(namespace)
    return created
