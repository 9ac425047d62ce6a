"""Sensors: propose bounded ingestion batches; the data's position lives in Iceberg.

A sensor's cursor is only a hint. The run re-reads its start position from the
bronze table, so a sensor that over- or under-estimates can never cause a record
to be skipped or landed twice. The clients (Kafka, S3, PostgreSQL) and the readers
are imported by the tick that uses them, not when the code location loads.
"""

import hashlib
import json
import time

import dagster as dg

from lakehouse.declarations.sources import (
    CdcSource,
    DatabaseSource,
    KafkaSource,
    LandingSource,
    sources,
)
from lakehouse.defs.bronze.assets import bronze_op_name
from lakehouse.defs.bronze.jobs import ingest_job_name
from lakehouse.settings import KafkaOffsetPolicy, get_settings
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.postgres import PostgresResource
from resources.s3 import S3Resource

MAX_FILES_PER_RUN = 200
# A batch whose runs end without moving the committed position is proposed again at
# most this many times, then waits for a person (bounded retries, never a loop).
MAX_ATTEMPTS_PER_BATCH = 3
BATCH_TAG = "lakehouse/batch"


def propose(
    context: dg.SensorEvaluationContext,
    batch: str,
    run_config: dg.RunConfig | None = None,
    tags: dict[str, str] | None = None,
) -> dg.RunRequest | dg.SkipReason:
    """A run for ``batch`` (its start position) unless one runs or too many have ended.

    The run key carries the attempt number: a run that failed, or succeeded without
    committing, does not block the batch for good the way a bare run key would.
    """
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={BATCH_TAG: batch}))
    if any(not run.is_finished for run in runs):
        return dg.SkipReason(f"{batch}: a run for this batch is in progress")
    if len(runs) >= MAX_ATTEMPTS_PER_BATCH:
        return dg.SkipReason(
            f"{batch}: {len(runs)} runs ended without moving the committed position "
            f"(latest: {runs[0].run_id}); fix the cause shown in that run, then launch "
            "the ingest job by hand"
        )
    return dg.RunRequest(
        run_key=f"{batch}#{len(runs)}",
        run_config=run_config,
        tags={**(tags or {}), BATCH_TAG: batch},
    )


def kafka_highwater(kafka: KafkaResource, topic: str, committed: dict[int, int]) -> dict[int, int]:
    """High-water mark per partition, learnt from a fetch (Tansu's ListOffsets is approximate)."""
    # The probe only needs the fetch response's high-water mark: one small fetch per
    # partition and no CRC pass over the records, so a tick stays short however large
    # the backlog (bench/sensor_backlog.py).
    from kafka import TopicPartition

    consumer = kafka.consumer(
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=64 * 1024,
        fetch_max_bytes=1024 * 1024,
        check_crcs=False,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return {}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, committed.get(tp.partition, 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            consumer.poll(timeout_ms=200, max_records=1)
            if all(consumer.highwater(tp) is not None for tp in tps):
                break
        # a partition whose high-water mark is still unknown is left for the next tick
        return {tp.partition: hw for tp in tps if (hw := consumer.highwater(tp)) is not None}
    finally:
        consumer.close()


def kafka_sensor(source: KafkaSource | CdcSource) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{source.bronze_name}_kafka_sensor",
        job_name=ingest_job_name(source),
        # every 10 s: a tick is one committed-offsets read and one small fetch per
        # partition, and it is most of the way from an event to gold (bench.live_latency)
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Proposes a batch when Kafka topic {source.topic} holds records that "
        f"{source.bronze_table} has not committed.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, iceberg: IcebergCatalogResource, kafka: KafkaResource
    ):
        from lakehouse.ingest.kafka.reader import read_committed_offsets

        settings = get_settings()
        topic = source.resolved_topic(settings.kafka_topic_prefix)
        committed = read_committed_offsets(iceberg.load(), source, topic)
        highwater = kafka_highwater(kafka, topic, committed)
        backlog = {p: hw - committed.get(p, 0) for p, hw in highwater.items()}
        behind = {p: (committed.get(p, 0), hw) for p, hw in highwater.items() if backlog[p] < 0}
        if behind and settings.kafka_offset_policy is KafkaOffsetPolicy.FAIL:
            return dg.SkipReason(
                f"{topic}: bronze committed offsets are ahead of the broker's end "
                f"(partition: (committed, broker end)) {behind}; topic recreated or broker "
                "restarted empty? Set LAKEHOUSE_KAFKA_OFFSET_POLICY=earliest (re-read) or "
                "latest (skip) to let ingestion move on."
            )
        if not behind and not any(n > 0 for n in backlog.values()):
            return dg.SkipReason(f"{topic}: no new records (committed {committed})")
        start = ",".join(f"{p}:{committed.get(p, 0)}" for p in sorted(highwater))
        return propose(
            context,
            f"{topic}@{start}",
            run_config=dg.RunConfig(
                ops={
                    bronze_op_name(source): {
                        "config": {
                            "until_offsets": {str(p): hw for p, hw in highwater.items()},
                            "max_records": settings.kafka_max_records_per_run,
                        }
                    }
                }
            ),
            tags={"lakehouse/topic": topic, "lakehouse/backlog": str(sum(backlog.values()))},
        )

    return _sensor


def landing_sensor(source: LandingSource) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{source.name}_landing_sensor",
        job_name=ingest_job_name(source),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Proposes a batch of new files under s3://<landing>/{source.key_prefix}.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext, iceberg: IcebergCatalogResource, s3: S3Resource
    ):
        from lakehouse.ingest.landing.reader import ingested_files, list_new_files

        settings = get_settings()
        bucket = settings.landing_bucket
        done = ingested_files(iceberg.load(), source)
        keys = list_new_files(
            s3.client(), bucket, source, done, MAX_FILES_PER_RUN, settings.landing_batch_bytes
        )
        if not keys:
            return dg.SkipReason(f"no new files under s3://{bucket}/{source.key_prefix}")
        digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        return propose(
            context,
            f"{source.name}:{digest}",
            run_config=dg.RunConfig(ops={bronze_op_name(source): {"config": {"files": keys}}}),
            tags={"lakehouse/files": str(len(keys))},
        )

    return _sensor


def database_sensor(source: DatabaseSource) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{source.bronze_name}_database_sensor",
        job_name=ingest_job_name(source),
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Proposes an extraction when {source.table} has rows past the committed "
        f"({source.watermark}, key) position.",
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        iceberg: IcebergCatalogResource,
        postgres: PostgresResource,
    ):
        import psycopg

        from lakehouse.ingest.database import (
            check_columns,
            committed_watermark,
            rows_after,
            table_columns,
        )

        position = committed_watermark(iceberg.load(), source)
        dsn = postgres.conninfo()
        try:
            # A schema break fails the tick with the extraction's own message, naming
            # the column, instead of PostgreSQL's "column ... does not exist".
            check_columns(source, table_columns(dsn, source))
            order = [source.watermark, *source.keys]
            newer = rows_after(dsn, source, position, limit=1, columns=order)
        except psycopg.OperationalError as exc:
            return dg.SkipReason(f"cannot reach the database for {source.table}: {exc}")
        if not newer:
            return dg.SkipReason(f"{source.table}: no rows past {position}")
        start = json.dumps(position, sort_keys=True) if position else "start"
        digest = hashlib.sha256(start.encode()).hexdigest()[:16]
        return propose(context, f"{source.name}@{digest}", tags={"lakehouse/position": start})

    return _sensor


ingestion_sensors = (
    [kafka_sensor(s) for s in (*sources().kafka, *sources().cdc)]
    + [landing_sensor(s) for s in sources().landing]
    + [database_sensor(s) for s in sources().database]
)
