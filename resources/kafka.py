"""Kafka clients for sensors and ingestion assets.

Consumers never join a group and never commit to the broker: positions live in the
Iceberg snapshot summaries (see ``lakehouse.tables.commits``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.settings import get_settings

if TYPE_CHECKING:
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer


class KafkaResource(dg.ConfigurableResource):
    bootstrap_servers: str | None = None
    request_timeout_ms: int = 15_000

    def servers(self) -> str:
        return self.bootstrap_servers or get_settings().resolved_kafka_bootstrap

    def consumer(self, **overrides) -> KafkaConsumer:
        from kafka import KafkaConsumer

        options = {
            "bootstrap_servers": self.servers(),
            "group_id": None,
            "enable_auto_commit": False,
            "request_timeout_ms": self.request_timeout_ms,
            "max_partition_fetch_bytes": 8 * 1024 * 1024,
            # records of aborted transactions never reach bronze (Debezium exactly-once,
            # Kafka Streams producers write transactionally)
            "isolation_level": "read_committed",
            "fetch_max_bytes": 64 * 1024 * 1024,
            **overrides,
        }
        return KafkaConsumer(**options)

    def producer(self, **overrides) -> KafkaProducer:
        from kafka import KafkaProducer

        options = {
            "bootstrap_servers": self.servers(),
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "request_timeout_ms": self.request_timeout_ms,
            **overrides,
        }
        return KafkaProducer(**options)

    def admin(self) -> KafkaAdminClient:
        from kafka import KafkaAdminClient

        return KafkaAdminClient(
            bootstrap_servers=self.servers(), request_timeout_ms=self.request_timeout_ms
        )
