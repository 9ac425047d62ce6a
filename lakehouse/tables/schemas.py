"""Iceberg schemas and partition specs of the lakehouse tables.

Lineage columns follow the bronze contract in DESIGN.md: every bronze row says
where it came from (`_source`, `_ingested_at`, `_run_id`, plus the Kafka
coordinates or the file and row).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (
    DateType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)


@dataclass(frozen=True)
class TableLayout:
    schema: Schema
    partition_spec: PartitionSpec

    def arrow_schema(self):
        return self.schema.as_arrow()


def _fields(*specs: tuple[str, object]) -> list[NestedField]:
    return [
        NestedField(field_id=i, name=name, field_type=ftype, required=False)
        for i, (name, ftype) in enumerate(specs, start=1)
    ]


def _day_spec(schema: Schema, column: str, name: str) -> PartitionSpec:
    source = schema.find_field(column)
    return PartitionSpec(
        PartitionField(
            source_id=source.field_id, field_id=1000, transform=DayTransform(), name=name
        )
    )


def _layout(columns: list[tuple[str, object]], day_column: str) -> TableLayout:
    schema = Schema(*_fields(*columns))
    return TableLayout(schema, _day_spec(schema, day_column, f"{day_column.lstrip('_')}_day"))


KAFKA_LINEAGE = [
    ("_source", StringType()),
    ("_kafka_topic", StringType()),
    ("_kafka_partition", IntegerType()),
    ("_kafka_offset", LongType()),
    ("_kafka_timestamp", TimestamptzType()),
    ("_ingested_at", TimestamptzType()),
    ("_run_id", StringType()),
]

FILE_LINEAGE = [
    ("_source", StringType()),
    ("_file", StringType()),
    ("_row", LongType()),
    ("_ingested_at", TimestamptzType()),
    ("_run_id", StringType()),
]


def kafka_bronze_layout(columns: list[str]) -> TableLayout:
    """Declared event fields as raw text, the whole event in ``payload``, Kafka lineage."""
    return _layout(
        [*((c, StringType()) for c in columns), ("payload", StringType()), *KAFKA_LINEAGE],
        "_ingested_at",
    )


def landing_bronze_layout(columns: list[str]) -> TableLayout:
    """Declared file columns as raw text (silver types them), file lineage."""
    return _layout([*((c, StringType()) for c in columns), *FILE_LINEAGE], "_ingested_at")


SILVER_PAGE_VIEWS = _layout(
    [
        ("event_id", StringType()),
        ("user_id", StringType()),
        ("session_id", StringType()),
        ("page", StringType()),
        ("product_id", StringType()),
        ("event_ts", TimestamptzType()),
        ("event_date", DateType()),
        ("_kafka_partition", IntegerType()),
        ("_kafka_offset", LongType()),
    ],
    "event_ts",
)

QUARANTINE = _layout(
    [
        ("_source", StringType()),
        ("_rule", StringType()),
        ("_reason", StringType()),
        ("_raw", StringType()),
        ("_kafka_topic", StringType()),
        ("_kafka_partition", IntegerType()),
        ("_kafka_offset", LongType()),
        ("_file", StringType()),
        ("_row", LongType()),
        ("_ingested_at", TimestamptzType()),
        ("_run_id", StringType()),
    ],
    "_ingested_at",
)
