"""Replaying quarantined Kafka records into bronze after a fix, exactly once.

A record lands in ``quarantine.<source>`` when it fails parsing or a bronze rule
(invalid JSON, a required field missing, ...). Once the cause is fixed (the
producer's bug understood and ``sources.yml`` relaxed, or the parser corrected),
``lakehouse replay <source>`` runs every quarantined record through today's bronze
rules again. Records that pass are appended to bronze with their original Kafka
coordinates, then removed from quarantine; the rest stay with their reason.

Exactly once: the Kafka coordinates are the identity. A record whose coordinates are
already in bronze is never appended again, only removed from quarantine, so a replay
that dies between its two commits is completed by the next one; the bronze
exactly-once offsets check sees every offset once at the end. Replayed bronze rows
carry the replay's ``_run_id`` and their commit's summary names the quarantine they
came from.

Only records whose quarantined text is the exact payload can be replayed from the
table: not those quarantined as non-UTF-8 or oversized (stored escaped/truncated)
nor tombstones; those are reported and stay. Silver quarantine tables
(``quarantine.page_views``) need no replay: silver is recomputed from bronze on
every run, so a fixed rule lets those rows through on the next silver run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import And, EqualTo, In, Or

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import CdcSource, KafkaSource
from lakehouse.ingest.records import RecordRejected
from lakehouse.tables.commits import (
    RUN_ID_KEY,
    conform,
    ensure_table,
    transaction,
    with_commit_retries,
)

LOSSY_RULES = {"utf8", "max_size", "not_null"}
REPLAY_KEY = "lakehouse.replayed-from"

Coordinates = tuple[str, int, int]


@dataclass
class ReplayResult:
    source: str
    examined: int = 0
    replayed: int = 0
    already_in_bronze: int = 0  # finished here: a previous replay appended, then stopped
    removed_from_quarantine: int = 0
    still_failing: dict[str, int] = field(default_factory=dict)
    not_replayable: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.source}: {self.examined} quarantined records examined, {self.replayed} "
            f"replayed into bronze, {self.already_in_bronze} completed from an earlier replay, "
            f"{self.removed_from_quarantine} removed from quarantine; still failing "
            f"{self.still_failing or 'none'}; not replayable from the table "
            f"{self.not_replayable or 'none'}"
        )


def _replayable(row: dict[str, Any]) -> bool:
    raw = row["_raw"]
    return not (
        row["_rule"] in LOSSY_RULES
        or raw is None
        or row["_kafka_offset"] is None
        or (raw.endswith(" bytes]") and "...[truncated, " in raw)
    )


def append_replayed(
    catalog: Catalog, source: KafkaSource | CdcSource, run_id: str
) -> tuple[ReplayResult, list[Coordinates]]:
    """Step 1: append what passes today's rules to bronze; return the coordinates now done."""
    # the Kafka decoder (numpy, pyarrow.json, pandas): silver imports this module for
    # REPLAY_KEY when the code location loads, a replay is what needs the decoder
    from lakehouse.ingest.kafka.decode import bronze_row

    def attempt() -> tuple[ReplayResult, list[Coordinates]]:
        result = ReplayResult(source.name)
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        in_bronze = {
            (r["_kafka_topic"], r["_kafka_partition"], r["_kafka_offset"])
            for r in bronze.scan(
                selected_fields=("_kafka_topic", "_kafka_partition", "_kafka_offset")
            )
            .to_arrow()
            .to_pylist()
        }
        still: Counter[str] = Counter()
        lossy: Counter[str] = Counter()
        rows, done = [], []
        now = datetime.now(UTC)
        for record in quarantine.scan().to_arrow().to_pylist():
            result.examined += 1
            at = (record["_kafka_topic"], record["_kafka_partition"], record["_kafka_offset"])
            if at in in_bronze:
                result.already_in_bronze += 1
                done.append(at)
                continue
            if not _replayable(record):
                lossy[record["_rule"]] += 1
                continue
            message = SimpleNamespace(
                value=record["_raw"].encode("utf-8"),
                key=None,
                topic=at[0],
                partition=at[1],
                offset=at[2],
                timestamp=None,
            )
            try:
                row = bronze_row(source, message)
            except RecordRejected as rejected:
                still[rejected.rule] += 1
                continue
            row.update(
                _source=source.name,
                _kafka_topic=at[0],
                _kafka_partition=at[1],
                _kafka_offset=at[2],
                _kafka_timestamp=None,  # not kept in quarantine
                _ingested_at=now,
                _run_id=run_id,
            )
            rows.append(row)
            done.append(at)
            in_bronze.add(at)
        if rows:
            arrow = pa.Table.from_pylist(rows, schema=source.layout.arrow_schema())
            bronze.append(
                conform(arrow, bronze.schema().as_arrow()),
                snapshot_properties={RUN_ID_KEY: run_id, REPLAY_KEY: source.quarantine_table},
            )
        result.replayed = len(rows)
        result.still_failing = dict(still)
        result.not_replayable = dict(lossy)
        return result, done

    return with_commit_retries(attempt)


def remove_from_quarantine(
    catalog: Catalog, source: KafkaSource | CdcSource, done: list[Coordinates], run_id: str
) -> int:
    """Step 2: delete the records now in bronze from quarantine."""
    if not done:
        return 0
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in done:
        by_partition.setdefault((topic, partition), []).append(offset)
    clauses = [
        And(And(EqualTo("_kafka_topic", t), EqualTo("_kafka_partition", p)), In("_kafka_offset", o))
        for (t, p), o in sorted(by_partition.items())
    ]
    condition = clauses[0] if len(clauses) == 1 else Or(*clauses)

    def attempt() -> int:
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        with transaction(quarantine) as tx:
            tx.delete(condition, snapshot_properties={RUN_ID_KEY: run_id})
        return len(done)

    return with_commit_retries(attempt)


def replay_quarantine(
    catalog: Catalog, source: KafkaSource | CdcSource, run_id: str
) -> ReplayResult:
    result, done = append_replayed(catalog, source, run_id)
    result.removed_from_quarantine = remove_from_quarantine(catalog, source, done, run_id)
    return result
