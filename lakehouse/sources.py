"""The sources the lakehouse ingests (issue #3 moves these into configuration)."""

from __future__ import annotations

from lakehouse.ingest.kafka_events import KafkaSource
from lakehouse.ingest.landing_files import LandingSource
from lakehouse.settings import LakehouseSettings
from lakehouse.tables.schemas import BRONZE_CLICKSTREAM, BRONZE_MARKETING_SPEND

MARKETING_SPEND = LandingSource(
    name="marketing_spend", columns=("spend_date", "channel", "campaign", "spend", "currency")
)
LANDING_LAYOUTS = {MARKETING_SPEND.name: BRONZE_MARKETING_SPEND}


def clickstream_source(settings: LakehouseSettings) -> KafkaSource:
    return KafkaSource(
        name="clickstream",
        topic=settings.kafka_clickstream_topic,
        layout=BRONZE_CLICKSTREAM,
        required_fields=("event_id", "event_type", "user_id", "ts"),
        columns={
            "event_id": "event_id",
            "event_type": "event_type",
            "user_id": "user_id",
            "event_ts": "ts",
        },
    )
