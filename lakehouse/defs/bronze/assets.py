"""Bronze: raw, append-only Iceberg tables, landed exactly once with lineage columns.

One pair of assets (bronze.<source>, quarantine.<source>) per source in sources.yml.
The ingestion code (Kafka, S3, PostgreSQL clients, pyarrow) is imported by the step
that runs it, not when the code location loads.
"""

import dagster as dg

from lakehouse.declarations.sources import (
    CdcSource,
    DatabaseSource,
    KafkaSource,
    LandingSource,
    Source,
    sources,
)
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.postgres import PostgresResource
from resources.s3 import S3Resource


class KafkaBatchConfig(dg.Config):
    """Set by the Kafka sensor; a manual run reads everything new (bounded by max_records)."""

    until_offsets: dict[str, int] | None = None
    max_records: int | None = None


class LandingBatchConfig(dg.Config):
    """Set by the landing sensor; a manual run takes every file not yet ingested."""

    files: list[str] | None = None  # key@etag versions (plain keys read the current version)
    max_files: int = 500


def bronze_op_name(source: Source) -> str:
    return f"bronze_{source.bronze_name}"


def _specs(source: Source, kind: str, description: str) -> list:
    return [
        dg.AssetSpec(
            ["bronze", source.bronze_name],
            group_name="bronze",
            kinds={"iceberg", kind},
            description=description,
            metadata={"lakehouse/keys": list(source.keys), "lakehouse/pii": list(source.pii)},
        ),
        dg.AssetSpec(
            ["quarantine", source.bronze_name],
            group_name="quarantine",
            kinds={"iceberg"},
            description=f"Records of {source.name} that could not enter bronze, with rule "
            "and reason, the raw value and where it came from.",
        ),
    ]


def kafka_bronze_asset(source: KafkaSource | CdcSource) -> dg.AssetsDefinition:
    what = (
        f"Debezium change events of topic {source.topic}: the raw changelog (op, key, LSN, "
        "source time, event as received), tombstones included"
        if isinstance(source, CdcSource)
        else f"JSON events from Kafka topic {source.topic}, one row per record that parsed, raw"
    )

    @dg.multi_asset(
        name=bronze_op_name(source),
        op_tags=k8s_tags("ingest"),
        specs=_specs(
            source,
            "kafka",
            f"{what}; the next offsets are committed in the same Iceberg snapshot.",
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: KafkaBatchConfig,
        iceberg: IcebergCatalogResource,
        kafka: KafkaResource,
    ):
        from lakehouse.ingest.kafka.reader import ingest_kafka_batch

        freeze_loaded_heap()
        settings = get_settings()
        topic = source.resolved_topic(settings.kafka_topic_prefix)
        catalog = iceberg.load()
        batch = ingest_kafka_batch(
            catalog,
            kafka,
            source,
            topic,
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
        yield from _results(
            catalog,
            source,
            bronze={
                "rows_written": batch.landed,
                "records_read": batch.records_read,
                "rows_quarantined": batch.quarantined,
                "topic": topic,
                "start_offsets": dg.MetadataValue.json(_str_keys(batch.start_offsets)),
                "next_offsets": dg.MetadataValue.json(_str_keys(batch.next_offsets)),
                "committed_snapshot_id": str(batch.snapshot_id or "no new commit"),
                "offset_resets": dg.MetadataValue.json(batch.offset_resets),
            },
            quarantine={
                "rows_quarantined": batch.quarantined,
                "rules": dg.MetadataValue.json(batch.quarantine_rules),
            },
        )

    return _asset


def landing_bronze_asset(source: LandingSource) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name=bronze_op_name(source),
        op_tags=k8s_tags("ingest"),
        specs=_specs(
            source,
            "s3",
            f"{source.format.upper()} files from s3://<landing>/{source.key_prefix}, checked "
            "against the declared schema, raw text with file and line; each file ingested once.",
        ),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: LandingBatchConfig,
        iceberg: IcebergCatalogResource,
        s3: S3Resource,
    ):
        from lakehouse.ingest.landing.reader import ingest_files, ingested_files, list_new_files

        freeze_loaded_heap()
        settings = get_settings()
        catalog = iceberg.load()
        client = s3.client()
        keys = config.files
        if keys is None:
            done = ingested_files(catalog, source)
            bucket, most = settings.landing_bucket, settings.landing_batch_bytes
            keys = list_new_files(client, bucket, source, done, config.max_files, most)
        batch = ingest_files(
            catalog, client, settings.landing_bucket, source, keys, context.run.run_id
        )
        if batch.files_quarantined:
            context.log.warning(f"files quarantined whole: {batch.files_quarantined}")
        if batch.files_changed:
            context.log.warning(
                f"files re-uploaded after they were listed, left for the next run: "
                f"{batch.files_changed}"
            )
        yield from _results(
            catalog,
            source,
            bronze={
                "rows_written": batch.landed,
                "rows_read": batch.rows_read,
                "rows_quarantined": batch.quarantined,
                "files": dg.MetadataValue.json(batch.files),
                "files_changed_since_listing": dg.MetadataValue.json(batch.files_changed),
                "committed_snapshot_id": str(batch.snapshot_id or "no new commit"),
            },
            quarantine={
                "rows_quarantined": batch.quarantined,
                "files_quarantined": dg.MetadataValue.json(batch.files_quarantined),
            },
        )

    return _asset


def database_bronze_asset(source: DatabaseSource) -> dg.AssetsDefinition:
    @dg.asset(
        key=["bronze", source.bronze_name],
        group_name="bronze",
        kinds={"iceberg", "postgres"},
        description=f"Rows of {source.table} read incrementally by ({source.watermark}, "
        f"{', '.join(source.keys)}); the position is committed with the rows. Deletes are "
        "not visible to a watermark: they reach silver through CDC.",
        metadata={"lakehouse/keys": list(source.keys), "lakehouse/pii": list(source.pii)},
        op_tags=k8s_tags("ingest"),
    )
    def _asset(
        context: dg.AssetExecutionContext,
        iceberg: IcebergCatalogResource,
        postgres: PostgresResource,
    ) -> dg.MaterializeResult:
        from lakehouse.ingest.database import extract_batch

        freeze_loaded_heap()
        catalog = iceberg.load()
        batch = extract_batch(catalog, postgres.conninfo(), source, context.run.run_id)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(catalog.load_table(source.bronze_table)),
                "rows_written": batch.landed,
                "start_position": dg.MetadataValue.json(batch.start or {}),
                "end_position": dg.MetadataValue.json(batch.end or {}),
                "committed_snapshot_id": str(batch.snapshot_id or "no new commit"),
            }
        )

    return _asset


def _results(catalog, source: Source, bronze: dict, quarantine: dict):
    """The bronze and quarantine materializations of one batch, each with its table's state."""
    yield dg.MaterializeResult(
        asset_key=["bronze", source.bronze_name],
        metadata={**table_metadata(catalog.load_table(source.bronze_table)), **bronze},
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", source.bronze_name],
        metadata={**table_metadata(catalog.load_table(source.quarantine_table)), **quarantine},
    )


def _str_keys(offsets: dict[int, int]) -> dict[str, int]:
    return {str(p): o for p, o in sorted(offsets.items())}


bronze_assets = (
    [kafka_bronze_asset(s) for s in (*sources().kafka, *sources().cdc)]
    + [landing_bronze_asset(s) for s in sources().landing]
    + [database_bronze_asset(s) for s in sources().database]
)
