"""Kafka JSON events into bronze, exactly once.

The bronze table's snapshot summaries are the only record of how far a topic has
been read: a batch starts at the table's committed next-offsets, never at the
broker's consumer-group offsets, and commits its new next-offsets together with
its rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import OffsetOutOfRangeError
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import CdcSource, KafkaSource
from lakehouse.ingest.kafka.decode import BronzeBuilder
from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.settings import KafkaOffsetPolicy
from lakehouse.tables.commits import (
    append_files_with_position,
    append_with_position,
    committed_position,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.data_files import GROUP_BYTES, BackgroundDataFiles


class ConsumerFactory(Protocol):
    """What the reader needs of ``resources.kafka.KafkaResource``: a new consumer.

    A structural type, so this core module does not import the Dagster resource
    layer that sits above it.
    """

    def consumer(self, **overrides: Any) -> KafkaConsumer: ...


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
    kafka: ConsumerFactory,
    source: KafkaSource | CdcSource,
    topic: str,
    run_id: str,
    *,
    until_offsets: dict[int, int] | None = None,
    max_records: int = 500_000,
    policy: KafkaOffsetPolicy = KafkaOffsetPolicy.FAIL,
    poll_timeout_ms: int = 1_000,
    data_file_bytes: int = GROUP_BYTES,
) -> KafkaBatch:
    """Read ``topic`` from the committed offsets (up to ``until_offsets``), commit the batch.

    ``data_file_bytes``: Arrow bytes per bronze data file written while reading.
    """
    layout = source.layout

    def attempt() -> KafkaBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        # quarantine is needed only at the end: it loads (or is created) while polling
        loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quarantine-table")
        try:
            quarantine = loader.submit(ensure_table, catalog, source.quarantine_table, QUARANTINE)
            return read_and_commit(bronze, quarantine)
        finally:
            loader.shutdown(wait=True)

    def read_and_commit(bronze: Table, quarantine: Future[Table]) -> KafkaBatch:
        committed = {int(p): int(o) for p, o in (committed_position(bronze, topic) or {}).items()}
        ingested_at = datetime.now(UTC)
        rejects = QuarantineBuffer(source.name, run_id, ingested_at)
        # Bronze data files are written while polling goes on and committed with the
        # offsets at the end; until then no snapshot references them.
        files = BackgroundDataFiles(bronze, data_file_bytes)
        builder = BronzeBuilder(
            source, layout.arrow_schema(), run_id, ingested_at, rejects, sink=files.add
        )
        # chunks are converted while the next ones are polled: Arrow's JSON reader and
        # kernels release the GIL, so they run beside the Kafka client's Python parsing
        chunks = ChunkPipeline(builder.add)
        try:
            batch = _consume(
                kafka,
                topic,
                committed,
                until_offsets,
                max_records,
                policy,
                poll_timeout_ms,
                chunks.add,
            )
            chunks.finish()
            if batch.next_offsets == committed and not batch.records_read:
                files.discard()
                quarantine.result()  # created on first use, as bronze is
                return batch
            # the last group is written while quarantine commits (it commits first in
            # any case; a failure after it is what a crash between the two commits is)
            files.flush()
            _commit_rejects(quarantine.result(), rejects, batch, topic, committed, run_id)
            data_files = files.finish()
        except BaseException:
            chunks.cancel()
            files.discard()
            raise
        position = {str(p): o for p, o in batch.next_offsets.items()}
        try:
            batch.snapshot_id = append_files_with_position(
                bronze, data_files, topic, position, run_id
            )
        except CommitFailedException:
            files.discard()  # another commit won: these files are referenced by nothing
            raise
        # any other error leaves the files alone: the commit's outcome is unknown
        batch.landed = files.rows
        batch.quarantined = batch.records_read - files.rows
        return batch

    return with_commit_retries(attempt)


def _consume(kafka, topic, committed, until_offsets, max_records, policy, poll_timeout_ms, sink):
    consumer = kafka.consumer(auto_offset_reset="none")
    try:
        return _read(
            consumer,
            topic,
            committed,
            until_offsets,
            max_records,
            policy,
            poll_timeout_ms,
            sink,
        )
    finally:
        consumer.close()


def _commit_rejects(quarantine, rejects, batch, topic, committed, run_id) -> None:
    """Quarantine first, recording the bronze position it was based on.

    A crash between this commit and bronze's leaves bronze at that base: the retry
    then skips the rejects that quarantine already holds (those in [base, next) of
    that commit). After an offset reset bronze's base differs, and every reject is
    written.
    """
    for row in rejects.rows:
        batch.quarantine_rules[row["_rule"]] = batch.quarantine_rules.get(row["_rule"], 0) + 1
    position = {str(p): o for p, o in batch.next_offsets.items()}
    base = {str(p): o for p, o in committed.items()}
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


class ChunkPipeline:
    """Runs ``work`` on each polled chunk in one worker thread, in polling order.

    The polling thread only hands chunks over, so the Kafka client goes on parsing
    the next fetch while a chunk is converted and the GIL-free part of that work
    (Arrow's JSON reader and kernels, the data-file writer) runs on another core.
    At most ``depth`` chunks wait, so a slow conversion holds the poll loop back
    instead of piling up records. The caller must ``finish`` (which raises the
    first error of the worker) before it commits anything, or ``cancel``.
    """

    def __init__(self, work: Callable[[list], None], depth: int = 2) -> None:
        self.work = work
        self.depth = depth
        self.pending: deque[Future[None]] = deque()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-chunks")

    def add(self, records: list) -> None:
        while len(self.pending) >= self.depth:
            self.pending.popleft().result()
        self.pending.append(self.executor.submit(self.work, records))

    def finish(self) -> None:
        """Wait until every chunk is converted; the worker's first error surfaces here."""
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def cancel(self) -> None:
        """Drop the chunks not started and wait for the one running: the batch is abandoned."""
        self.pending.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _read(consumer, topic, committed, until_offsets, max_records, policy, poll_timeout_ms, sink):
    """Poll from the committed offsets, handing each partition's records to ``sink``."""
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
    remaining = max_records
    read = 0
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
            take = records
            stop = False
            if limit is not None and take and take[-1].offset >= limit:
                take = [record for record in take if record.offset < limit]
                stop = True
            if len(take) >= remaining:
                stop = stop or len(take) > remaining
                take = take[:remaining]
            if take:
                sink(take)
                batch.next_offsets[tp.partition] = take[-1].offset + 1
                remaining -= len(take)
                read += len(take)
            if stop or (limit is not None and batch.next_offsets[tp.partition] >= limit):
                active.discard(tp)
                consumer.pause(tp)
        if remaining > 0 and _caught_up(consumer, active):
            drained = True
            break
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
    batch.records_read = read
    return batch


def _caught_up(consumer, active) -> bool:
    """Every partition still read has reached the high-water mark of its latest fetch.

    Without this the loop ends only on an empty poll, which waits out the whole
    ``poll_timeout_ms`` (1 s, several % of a 200k-event batch) to learn what the
    fetch responses already said. Records produced later belong to the next batch,
    as they would after an empty poll. Under read_committed an open transaction
    keeps the position below the high-water mark, and the empty poll decides.
    """
    for tp in active:
        highwater = consumer.highwater(tp)
        if highwater is None or consumer.position(tp) < highwater:
            return False
    return True


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
