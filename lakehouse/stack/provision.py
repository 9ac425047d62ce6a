"""Idempotent creation of what the pipelines expect: topics, buckets, namespaces.

The same code prepares the embedded local stack (``lakehouse up``) and a production
environment (``lakehouse provision``, the provisioning Job in deploy/k8s/): whatever the
settings point at. Running it again creates nothing and changes nothing that exists.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from botocore.exceptions import ClientError
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
    for bucket in required_buckets(settings):
        if bucket not in buckets and _create_bucket(s3, bucket, settings.s3_region):
            created["buckets"].append(bucket)

    catalog = IcebergCatalogResource().load()
    existing_ns = {ns[0] for ns in catalog.list_namespaces()}
    for namespace in NAMESPACES:
        if namespace not in existing_ns:
            catalog.create_namespace_if_not_exists(namespace)
            created["namespaces"].append(namespace)
    return created


def required_buckets(settings: LakehouseSettings) -> list[str]:
    """The landing bucket, and the warehouse's when the warehouse is in S3 (production);
    a local warehouse is a directory."""
    buckets = [settings.landing_bucket]
    warehouse = urlsplit(settings.resolved_warehouse)
    if warehouse.scheme in ("s3", "s3a") and warehouse.netloc not in buckets:
        buckets.append(warehouse.netloc)
    return buckets


def _create_bucket(s3, bucket: str, region: str) -> bool:
    """Create a bucket; False when another provisioner created it first (a race, not an error)."""
    # S3 outside us-east-1 wants the region named; us-east-1 refuses it being named
    options = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    try:
        s3.create_bucket(Bucket=bucket, **options)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("BucketAlreadyOwnedByYou",):
            return False
        raise
    return True
