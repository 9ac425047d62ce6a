"""Iceberg schemas and partition specs of the lakehouse tables.

Lineage columns follow the bronze contract in DESIGN.md: every bronze row says
where it came from (`_source`, `_ingested_at`, `_run_id`, plus the Kafka
coordinates or the file and row).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

# Iceberg's own table properties for snapshot expiry (Spark's expire_snapshots reads
# them too); lakehouse.tables.maintenance honours them over the settings' defaults.
MAX_SNAPSHOT_AGE_MS = "history.expire.max-snapshot-age-ms"
MIN_SNAPSHOTS_TO_KEEP = "history.expire.min-snapshots-to-keep"


@dataclass(frozen=True)
class TableLayout:
    schema: Schema
    partition_spec: PartitionSpec
    # table properties set when the table is created, over commits.TABLE_PROPERTIES
    properties: tuple[tuple[str, str], ...] = ()

    def arrow_schema(self):
        return self.schema.as_arrow()

    def with_properties(self, properties: dict[str, str]) -> TableLayout:
        return replace(self, properties=tuple({**dict(self.properties), **properties}.items()))


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


# Parquet's dictionary page limit per column chunk (Iceberg's default: 2 MiB). A raw
# text column with many distinct values (payloads, ids, amounts, the row number) is
# hashed into a dictionary until the limit, then written plain anyway: at 256 KiB it
# gives up ~8x sooner. Columns with few values (dates, codes, lineage) still fit.
# Measured on bench.landing_throughput's rows: write CPU -20 to -25%, files -15%.
DICTIONARY_PAGE_BYTES = 256 * 1024


# What the columns the pipeline adds hold (the Dagster UI and Iceberg readers show them).
SYSTEM_COLUMN_DOCS = {
    "_source": "The sources.yml source the row came from.",
    "_kafka_topic": "Kafka topic the record was read from.",
    "_kafka_partition": "Kafka partition of the record.",
    "_kafka_offset": "Kafka offset of the record: with the partition, its place in the topic.",
    "_kafka_timestamp": "Timestamp Kafka stored with the record.",
    "_file": "Landing object (bucket key) the row was read from.",
    "_row": "Line (CSV, JSON lines) or row (Parquet) of the row in its file, from 1.",
    "_watermark": "Extraction watermark of the database source when the row was read.",
    "_ingested_at": "When the bronze batch that landed the row was committed (UTC).",
    "_run_id": "Dagster run that wrote the row.",
    "_lsn": "PostgreSQL WAL position (Debezium source.lsn) of the change that wrote this version.",
    "_source_ts": "Commit time of that change in the source database (Debezium source.ts_ms).",
    "_op": "Debezium operation of the change: c create, u update, r snapshot read.",
    "valid_from": "When this version took effect (the change's commit time, never before "
    "its predecessor's); as of T: valid_from <= T < valid_to.",
    "valid_to": "When the next change of the key, or its delete, took effect; null while current.",
    "is_current": "Whether this is the key's current version (valid_to is null).",
    "_rule": "The rule the row broke (a contract rule, or a decode or envelope rule at bronze).",
    "_reason": "Why the row broke the rule, with the offending value.",
    "_raw": "The record as it arrived, so a replay can land it once the cause is fixed.",
}


def _bronze(layout: TableLayout) -> TableLayout:
    """A bronze layout: raw text written once per batch, so its writes are kept cheap."""
    return layout.with_properties({"write.parquet.dict-size-bytes": str(DICTIONARY_PAGE_BYTES)})


def kafka_bronze_layout(columns: list[str]) -> TableLayout:
    """Declared event fields as raw text, the whole event in ``payload``, Kafka lineage."""
    return _bronze(
        _layout(
            [*((c, StringType()) for c in columns), ("payload", StringType()), *KAFKA_LINEAGE],
            "_ingested_at",
        )
    )


def iceberg_type(declared: str):
    """The Iceberg type of a declared column type (the vocabulary of sources.yml)."""
    declared = declared.strip()
    simple = {
        "string": StringType(),
        "int": IntegerType(),
        "long": LongType(),
        "double": DoubleType(),
        "boolean": BooleanType(),
        "date": DateType(),
        "timestamp": TimestamptzType(),
    }
    if declared in simple:
        return simple[declared]
    precision, scale = declared[len("decimal(") : -1].split(",")
    return DecimalType(int(precision), int(scale))


def cdc_silver_layouts(columns: dict[str, str]) -> tuple[TableLayout, TableLayout]:
    """Current state and SCD2 history of a CDC table: declared columns, typed."""
    typed = [(c, iceberg_type(t)) for c, t in columns.items()]
    position = [("_lsn", LongType()), ("_source_ts", TimestamptzType())]
    current = Schema(*_fields(*typed, *position))
    history = Schema(
        *_fields(
            *typed,
            *position,
            ("_op", StringType()),
            ("valid_from", TimestamptzType()),
            ("valid_to", TimestamptzType()),
            ("is_current", BooleanType()),
        )
    )
    # Closed versions never change again; only a key's open version is rewritten when a
    # change arrives. Partitioned by is_current, an incremental build rewrites the open
    # versions (one per key) and appends to the closed ones: its cost follows the
    # table's keys, not the length of its history.
    open_versions = PartitionSpec(
        PartitionField(
            source_id=history.find_field("is_current").field_id,
            field_id=1000,
            transform=IdentityTransform(),
            name="is_current",
        )
    )
    return TableLayout(current, PartitionSpec()), TableLayout(history, open_versions)


def typed_silver_layout(columns: dict[str, str]) -> TableLayout:
    """Current rows of a database or landing source: declared columns, typed."""
    return TableLayout(
        Schema(*_fields(*((c, iceberg_type(t)) for c, t in columns.items()))), PartitionSpec()
    )


def cdc_bronze_layout() -> TableLayout:
    """The raw Debezium changelog: op, key and source position, the event as it came."""
    return _bronze(
        _layout(
            [
                ("op", StringType()),
                ("key", StringType()),
                ("lsn", LongType()),
                ("source_ts_ms", LongType()),
                ("tx_id", LongType()),
                ("payload", StringType()),
                *KAFKA_LINEAGE,
            ],
            "_ingested_at",
        )
    )


def database_bronze_layout(columns: list[str]) -> TableLayout:
    """Rows read by watermark, as raw text, with the watermark they were read under."""
    return _bronze(
        _layout(
            [
                *((c, StringType()) for c in columns),
                ("_source", StringType()),
                ("_watermark", StringType()),
                ("_ingested_at", TimestamptzType()),
                ("_run_id", StringType()),
            ],
            "_ingested_at",
        )
    )


def landing_bronze_layout(columns: list[str]) -> TableLayout:
    """Declared file columns as raw text (silver types them), file lineage."""
    return _bronze(_layout([*((c, StringType()) for c in columns), *FILE_LINEAGE], "_ingested_at"))


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
