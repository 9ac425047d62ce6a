"""Bronze: raw, append-only Iceberg tables, landed exactly once with lineage columns."""

import dagster as dg

from lakehouse.ingest.kafka_events import ingest_kafka_batch
from lakehouse.ingest.landing_files import ingest_files, ingested_files, list_new_files
from lakehouse.settings import get_settings
from lakehouse.sources import LANDING_LAYOUTS, MARKETING_SPEND, clickstream_source
from lakehouse.tables.metadata import table_metadata
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource


class KafkaBatchConfig(dg.Config):
    """Set by the Kafka sensor; a manual run reads everything new (bounded by max_records)."""

    until_offsets: dict[str, int] | None = None
    max_records: int | None = None


class LandingBatchConfig(dg.Config):
    """Set by the landing sensor; a manual run takes every file not yet ingested."""

    files: list[str] | None = None
    max_files: int = 500


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["bronze", "clickstream"],
            group_name="bronze",
            kinds={"iceberg", "kafka"},
            description="Clickstream JSON events from Kafka, raw, one row per Kafka record "
            "that parsed; offsets committed in the same Iceberg snapshot.",
        ),
        dg.AssetSpec(
            ["quarantine", "clickstream"],
            group_name="quarantine",
            kinds={"iceberg"},
            description="Clickstream records that could not enter bronze, with rule and reason.",
        ),
    ],
)
def bronze_clickstream(
    context: dg.AssetExecutionContext,
    config: KafkaBatchConfig,
    iceberg: IcebergCatalogResource,
    kafka: KafkaResource,
):
    settings = get_settings()
    source = clickstream_source(settings)
    catalog = iceberg.load()
    batch = ingest_kafka_batch(
        catalog,
        kafka,
        source,
        context.run.run_id,
        until_offsets={int(p): o for p, o in (config.until_offsets or {}).items()} or None,
        max_records=config.max_records or settings.kafka_max_records_per_run,
        policy=settings.kafka_offset_policy,
    )
    for reset in batch.offset_resets:
        context.log.warning(f"offset policy applied: {reset}")
    if batch.quarantined:
        context.log.warning(
            f"{batch.quarantined} of {batch.records_read} records quarantined in "
            f"{source.quarantine_table}: {batch.quarantine_rules}"
        )
    yield dg.MaterializeResult(
        asset_key=["bronze", "clickstream"],
        metadata={
            **table_metadata(catalog.load_table(source.bronze_table)),
            "rows_written": batch.landed,
            "records_read": batch.records_read,
            "rows_quarantined": batch.quarantined,
            "start_offsets": dg.MetadataValue.json(_str_keys(batch.start_offsets)),
            "next_offsets": dg.MetadataValue.json(_str_keys(batch.next_offsets)),
            "committed_snapshot_id": str(batch.snapshot_id or "no new commit"),
            "offset_resets": dg.MetadataValue.json(batch.offset_resets),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "clickstream"],
        metadata={
            **table_metadata(catalog.load_table(source.quarantine_table)),
            "rows_quarantined": batch.quarantined,
            "rules": dg.MetadataValue.json(batch.quarantine_rules),
        },
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["bronze", MARKETING_SPEND.name],
            group_name="bronze",
            kinds={"iceberg", "s3"},
            description="Partner marketing-spend CSV files from s3://landing/marketing_spend/, "
            "raw strings with file and line; each file ingested once.",
        ),
        dg.AssetSpec(
            ["quarantine", MARKETING_SPEND.name],
            group_name="quarantine",
            kinds={"iceberg"},
            description="Marketing-spend rows or whole files that failed parsing, with reason.",
        ),
    ],
)
def bronze_marketing_spend(
    context: dg.AssetExecutionContext,
    config: LandingBatchConfig,
    iceberg: IcebergCatalogResource,
    s3: S3Resource,
):
    settings = get_settings()
    catalog = iceberg.load()
    client = s3.client()
    layout = LANDING_LAYOUTS[MARKETING_SPEND.name]
    keys = config.files
    if keys is None:
        done = ingested_files(catalog, MARKETING_SPEND, layout)
        keys = list_new_files(
            client, settings.landing_bucket, MARKETING_SPEND, done, config.max_files
        )
    batch = ingest_files(
        catalog, client, settings.landing_bucket, MARKETING_SPEND, layout, keys, context.run.run_id
    )
    if batch.files_quarantined:
        context.log.warning(f"files quarantined whole: {batch.files_quarantined}")
    yield dg.MaterializeResult(
        asset_key=["bronze", MARKETING_SPEND.name],
        metadata={
            **table_metadata(catalog.load_table(MARKETING_SPEND.bronze_table)),
            "rows_written": batch.landed,
            "rows_read": batch.rows_read,
            "rows_quarantined": batch.quarantined,
            "files": dg.MetadataValue.json(batch.files),
            "committed_snapshot_id": str(batch.snapshot_id or "no new commit"),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", MARKETING_SPEND.name],
        metadata={
            **table_metadata(catalog.load_table(MARKETING_SPEND.quarantine_table)),
            "rows_quarantined": batch.quarantined,
            "files_quarantined": dg.MetadataValue.json(batch.files_quarantined),
        },
    )


def _str_keys(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}
