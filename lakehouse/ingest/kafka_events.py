"""Kafka JSON events into bronze, exactly once.

The bronze table's snapshot summaries are the only record of how far a topic has
been read: a batch starts at the table's committed next-offsets, never at the
broker's consumer-group offsets, and commits its new next-offsets together with
its rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from kafka import TopicPartition
from kafka.errors import OffsetOutOfRangeError
from pyiceberg.catalog import Catalog

from lakehouse.ingest.debezium import parse_change
from lakehouse.ingest.records import QuarantineBuffer, RecordRejected, parse_json_event, raw_text
from lakehouse.settings import KafkaOffsetPolicy
from lakehouse.sources import CdcSource, KafkaSource
from lakehouse.tables.commits import (
    append_with_position,
    committed_position,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.schemas import QUARANTINE
from resources.kafka import KafkaResource

MAX_PAYLOAD_BYTES = 1024 * 1024


class OffsetsOutOfRange(RuntimeError):
    """The table's committed offsets do not exist on the broker (recreated topic, empty broker)."""


@dataclass
class KafkaBatch:
    topic: str
    start_offsets: dict[int, int]
    next_offsets: dict[int, int]
    records_read: int = 0
    landed: int = 0
    quarantined: int = 0
    snapshot_id: int | None = None
    quarantine_rules: dict[str, int] = field(default_factory=dict)
    offset_resets: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.records_read == self.landed + self.quarantined


def read_committed_offsets(
    catalog: Catalog, source: KafkaSource | CdcSource, topic: str
) -> dict[int, int]:
    table = ensure_table(catalog, source.bronze_table, source.layout)
    return {int(p): int(o) for p, o in (committed_position(table, topic) or {}).items()}


def ingest_kafka_batch(
    catalog: Catalog,
    kafka: KafkaResource,
    source: KafkaSource | CdcSource,
    topic: str,
    run_id: str,
    *,
    until_offsets: dict[int, int] | None = None,
    max_records: int = 500_000,
    policy: KafkaOffsetPolicy = KafkaOffsetPolicy.FAIL,
    poll_timeout_ms: int = 1_000,
) -> KafkaBatch:
    """Read ``topic`` from the committed offsets (up to ``until_offsets``), commit the batch."""
    layout = source.layout

    def attempt() -> KafkaBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        committed = {int(p): int(o) for p, o in (committed_position(bronze, topic) or {}).items()}
        consumer = kafka.consumer(auto_offset_reset="none")
        try:
            batch, messages = _read(
                consumer,
                topic,
                committed,
                until_offsets,
                max_records,
                policy,
                poll_timeout_ms,
            )
        finally:
            consumer.close()
        if batch.next_offsets == committed and not messages:
            return batch

        ingested_at = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        rejects = QuarantineBuffer(source.name, run_id, ingested_at)
        for message in messages:
            coordinates = {
                "_kafka_topic": message.topic,
                "_kafka_partition": message.partition,
                "_kafka_offset": message.offset,
            }
            try:
                if message.value is not None and len(message.value) > MAX_PAYLOAD_BYTES:
                    raise RecordRejected(
                        "max_size",
                        f"payload of {len(message.value)} bytes exceeds {MAX_PAYLOAD_BYTES}",
                    )
                row = bronze_row(source, message)
            except RecordRejected as rejected:
                rejects.add(rejected.rule, rejected.reason, raw_text(message.value), **coordinates)
                batch.quarantine_rules[rejected.rule] = (
                    batch.quarantine_rules.get(rejected.rule, 0) + 1
                )
                continue
            row.update(
                _source=source.name,
                _kafka_timestamp=_kafka_time(message.timestamp),
                _ingested_at=ingested_at,
                _run_id=run_id,
                **coordinates,
            )
            rows.append(row)

        position = {str(p): o for p, o in batch.next_offsets.items()}
        base = {str(p): o for p, o in committed.items()}
        # Quarantine first, recording the bronze position it was based on. A crash
        # between the two commits leaves bronze at that base: the retry then skips the
        # rejects that quarantine already holds (those in [base, next) of that commit).
        # After an offset reset bronze's base differs, and every reject is written.
        previous = committed_position(quarantine, topic) or {}
        if previous.get("base") == base:
            done_next = {int(p): o for p, o in previous.get("next", {}).items()}
            done_base = {int(p): o for p, o in base.items()}
            rejects.rows = [
                r
                for r in rejects.rows
                if not (
                    done_base.get(r["_kafka_partition"], 0)
                    <= r["_kafka_offset"]
                    < done_next.get(r["_kafka_partition"], 0)
                )
            ]
        if rejects.rows:
            q_position = {"base": base, "next": position}
            append_with_position(quarantine, rejects.to_arrow(), topic, q_position, run_id)
        arrow = pa.Table.from_pylist(rows, schema=layout.arrow_schema())
        batch.snapshot_id = append_with_position(bronze, arrow, topic, position, run_id)
        batch.landed = len(rows)
        batch.quarantined = len(messages) - len(rows)
        return batch

    return with_commit_retries(attempt)


def _kafka_time(timestamp_ms: int | None) -> datetime | None:
    """The record's Kafka timestamp; a producer's nonsense value is stored as null."""
    if timestamp_ms is None or timestamp_ms < 0:
        return None
    try:
        return datetime.fromtimestamp(timestamp_ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return None


def bronze_row(source: KafkaSource | CdcSource, message) -> dict[str, Any]:
    """The bronze columns of one Kafka record, or RecordRejected with rule and reason."""
    row = _bronze_values(source, message)
    for column, value in row.items():
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RecordRejected(
                    "utf8", f"field {column!r} holds an unpaired surrogate (\\ud800-style escape)"
                ) from None
    return row


def _bronze_values(source: KafkaSource | CdcSource, message) -> dict[str, Any]:
    if isinstance(source, CdcSource):
        change = parse_change(message.value, source.columns)
        return {
            "op": change.op if change else "tombstone",
            "key": message.key.decode("utf-8", errors="backslashreplace") if message.key else None,
            "lsn": change.lsn if change else None,
            "source_ts_ms": change.ts_ms if change else None,
            "tx_id": change.tx_id if change else None,
            "payload": message.value.decode("utf-8") if message.value is not None else None,
        }
    event = parse_json_event(message.value, source.required)
    row = {column: _as_text(event.get(name)) for column, name in source.columns.items()}
    row["payload"] = message.value.decode("utf-8")
    return row


def _read(consumer, topic, committed, until_offsets, max_records, policy, poll_timeout_ms):
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise RuntimeError(
            f"Kafka topic {topic!r} does not exist on {consumer.config['bootstrap_servers']}"
        )
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    log_start = consumer.beginning_offsets(tps)
    batch = KafkaBatch(topic=topic, start_offsets={}, next_offsets={})
    for tp in tps:
        # A partition the table has never seen (new topic or added partition) starts
        # at the broker's log start.
        start = committed.get(tp.partition, log_start[tp])
        if start < log_start[tp]:
            start = _resolve(
                policy,
                batch,
                f"{topic}[{tp.partition}]: committed offset {start} is behind the broker's log "
                f"start {log_start[tp]} (retention deleted unread records)",
                earliest=log_start[tp],
                latest=None,
            )
        if start is None:
            start = max(consumer.end_offsets([tp])[tp], log_start[tp])
        consumer.seek(tp, start)
        batch.start_offsets[tp.partition] = start
    batch.next_offsets = dict(batch.start_offsets)

    targets = {
        p: until_offsets[p]
        for p in batch.start_offsets
        if until_offsets is not None and p in until_offsets
    }
    active = {
        tp for tp in tps if batch.start_offsets[tp.partition] < targets.get(tp.partition, 2**62)
    }
    messages = []
    remaining = max_records
    resets = 0
    drained = False
    while active and remaining > 0:
        try:
            polled = consumer.poll(timeout_ms=poll_timeout_ms, max_records=min(remaining, 50_000))
        except OffsetOutOfRangeError as exc:
            resets += 1
            if resets > 2 * len(tps):
                raise OffsetsOutOfRange(
                    f"{topic}: fetch positions keep falling out of the broker's range "
                    f"({exc}); is retention deleting the log while it is read?"
                ) from exc
            out_of_range = exc.args[0] if exc.args else {}
            fresh_start = consumer.beginning_offsets(list(out_of_range))
            for tp, offset in out_of_range.items():
                _out_of_range(consumer, policy, batch, tp, offset, fresh_start[tp])
            continue
        if not polled:
            drained = True
            break
        for tp, records in polled.items():
            limit = targets.get(tp.partition)
            for record in records:
                if (limit is not None and record.offset >= limit) or remaining == 0:
                    active.discard(tp)
                    consumer.pause(tp)
                    break
                messages.append(record)
                batch.next_offsets[tp.partition] = record.offset + 1
                remaining -= 1
            if limit is not None and batch.next_offsets[tp.partition] >= limit:
                active.discard(tp)
                consumer.pause(tp)
    if drained:
        # Every returned record was taken, so the consumer's position is exact and may
        # be past transaction markers and aborted records, which never come back as
        # records: without this a transactional topic would look forever unread.
        for tp in active:
            position = consumer.position(tp)
            if position is not None and position > batch.next_offsets[tp.partition]:
                batch.next_offsets[tp.partition] = position
    for tp in tps:
        highwater = consumer.highwater(tp)
        start = batch.start_offsets[tp.partition]
        if (
            highwater is not None
            and start > highwater
            and batch.next_offsets[tp.partition] == start
        ):
            _out_of_range(consumer, policy, batch, tp, start, log_start[tp], highwater)
    batch.records_read = len(messages)
    return batch, messages


def _out_of_range(consumer, policy, batch, tp, offset, log_start, highwater=None) -> None:
    if offset < log_start:
        message = (
            f"{tp.topic}[{tp.partition}]: offset {offset} is behind the broker's log start "
            f"{log_start} (retention deleted records before they were read)"
        )
    else:
        message = (
            f"{tp.topic}[{tp.partition}]: committed offset {offset} is ahead of the broker's end"
            f"{'' if highwater is None else f' {highwater}'}"
            " (topic recreated or broker restarted empty?)"
        )
    new = _resolve(policy, batch, message, earliest=log_start, latest=highwater)
    if new is None:
        new = highwater if highwater is not None else consumer.end_offsets([tp])[tp]
    consumer.seek(tp, new)
    batch.start_offsets[tp.partition] = new
    batch.next_offsets[tp.partition] = new


def _resolve(policy, batch, message, *, earliest, latest):
    if policy is KafkaOffsetPolicy.FAIL:
        raise OffsetsOutOfRange(
            f"{message}. Nothing was read. Set LAKEHOUSE_KAFKA_OFFSET_POLICY=earliest to re-read "
            "the partition from its log start, or =latest to skip to its end."
        )
    batch.offset_resets.append(f"{message}; policy {policy.value}")
    return earliest if policy is KafkaOffsetPolicy.EARLIEST else latest


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
