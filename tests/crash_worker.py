"""Ingests a source in many small batches until nothing is left; the crash tests kill it.

Run as ``python -m tests.crash_worker <path> <batch size>`` with the LAKEHOUSE_*
environment of the test, where path is ``kafka`` (the clickstream topic),
``landing`` (the marketing_spend prefix; batch size in files) or ``database`` (the
items table of ``tests.test_crash_safety``, DSN in CRASH_WORKER_DSN). For ``kafka`` an
optional third argument is the Arrow bytes per bronze data file, small so that files
are written while polling, before the commit. Prints one line per committed batch.
"""

from __future__ import annotations

import os
import sys

from lakehouse.declarations.sources import DatabaseSource, sources
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource

ITEMS = DatabaseSource(
    name="items",
    table="public.items",
    watermark="updated_at",
    keys=("item_id",),
    columns={"item_id": "int", "label": "string", "updated_at": "timestamp"},
)


def kafka(size: int, data_file_bytes: int | None = None) -> None:
    from lakehouse.ingest.kafka.reader import ingest_kafka_batch
    from resources.kafka import KafkaResource

    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(get_settings().kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    while True:
        options = {"data_file_bytes": data_file_bytes} if data_file_bytes else {}
        batch = ingest_kafka_batch(
            catalog, KafkaResource(), source, topic, "crash-worker", max_records=size, **options
        )
        print(f"landed {batch.landed} quarantined {batch.quarantined}", flush=True)
        if batch.records_read == 0:
            return


def landing(size: int) -> None:
    from lakehouse.ingest.landing.reader import ingest_files, ingested_files, list_new_files
    from resources.s3 import S3Resource

    source = sources().landing_source("marketing_spend")
    bucket = get_settings().landing_bucket
    catalog = IcebergCatalogResource().load()
    s3 = S3Resource().client()
    while True:
        keys = list_new_files(s3, bucket, source, ingested_files(catalog, source), size)
        if not keys:
            return
        batch = ingest_files(catalog, s3, bucket, source, keys, "crash-worker")
        print(f"files {len(batch.files)} landed {batch.landed}", flush=True)


def database(size: int) -> None:
    from lakehouse.ingest.database import extract_batch

    catalog = IcebergCatalogResource().load()
    while True:
        batch = extract_batch(catalog, os.environ["CRASH_WORKER_DSN"], ITEMS, "crash", size)
        print(f"landed {batch.landed}", flush=True)
        if batch.landed == 0:
            return


def main() -> None:
    path, size, *extra = sys.argv[1:]
    {"kafka": kafka, "landing": landing, "database": database}[path](int(size), *map(int, extra))


if __name__ == "__main__":
    main()
