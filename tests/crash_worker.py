"""Ingests a topic in many small batches until nothing is left; the crash test kills it.

Run as ``python -m tests.crash_worker <max_records>`` with the LAKEHOUSE_* environment
of the test; prints one line per committed batch.
"""

from __future__ import annotations

import sys

from lakehouse.ingest.kafka_events import ingest_kafka_batch
from lakehouse.settings import get_settings
from lakehouse.sources import sources
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource


def main() -> None:
    max_records = int(sys.argv[1])
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(get_settings().kafka_topic_prefix)
    catalog = IcebergCatalogResource().load()
    while True:
        batch = ingest_kafka_batch(
            catalog, KafkaResource(), source, topic, "crash-worker", max_records=max_records
        )
        print(f"landed {batch.landed} quarantined {batch.quarantined}", flush=True)
        if batch.records_read == 0:
            return


if __name__ == "__main__":
    main()
