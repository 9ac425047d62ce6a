"""Kafka records into bronze rows: JSON (or Debezium) decoding, Arrow columns, quarantine rejects.

``bronze_row`` defines, record by record, what lands and what is quarantined with
which rule and reason; ``BronzeBuilder`` builds the same rows a polled chunk at a
time, column-wise, falling back to ``bronze_row`` for any record it cannot vouch for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from itertools import compress
from operator import attrgetter
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from lakehouse.declarations.sources import CdcSource, KafkaSource
from lakehouse.ingest.debezium import parse_change
from lakehouse.ingest.records import QuarantineBuffer, RecordRejected, parse_json_event, raw_text

MAX_PAYLOAD_BYTES = 1024 * 1024


class BronzeBuilder:
    """Bronze rows as Arrow record batches, built from each polled chunk of records.

    Column-wise, and chunk by chunk so that the consumer's records are dropped as
    soon as they are converted: per-record dicts, ``Table.from_pylist`` and a heap of
    hundreds of thousands of live records (the garbage collector walks them all)
    cost more than the Kafka client itself, and ingestion has to keep up with the
    consumer (bench/kafka_throughput.py). Each record batch goes to ``sink`` (by
    default kept in ``batches``); rejected records go to ``rejects``.

    A per-chunk hook (e.g. the columns seen) belongs in ``add``, which sees every
    chunk once, before and after conversion.
    """

    def __init__(
        self,
        source: KafkaSource | CdcSource,
        schema: pa.Schema,
        run_id: str,
        ingested_at: datetime,
        rejects: QuarantineBuffer,
        sink: Callable[[pa.RecordBatch], None] | None = None,
    ) -> None:
        self.source = source
        self.schema = schema
        self.run_id = run_id
        self.ingested_at = ingested_at
        self.rejects = rejects
        self.names = _value_columns(source)
        self.fast = _EventFastPath(source) if isinstance(source, KafkaSource) else None
        self.columns = _EventColumns(source) if isinstance(source, KafkaSource) else None
        self.batches: list[pa.RecordBatch] = []
        self.sink = sink or self.batches.append

    def add(self, records: list) -> None:
        if self.columns is not None and records:
            self._emit(*self.columns.convert(records))
            return
        self._emit(None, records)

    def _emit(self, values: dict[str, pa.Array] | None, leftovers: list) -> None:
        """One record batch of the vectorised rows and the per-record ones, in offset order."""
        batches = [self._record_batch(values)] if values is not None else []
        slow = self._per_record(leftovers) if leftovers else None
        if slow is not None:
            batches.append(slow)
        if len(batches) > 1:
            merged = pa.Table.from_batches(batches).sort_by(
                [("_kafka_partition", "ascending"), ("_kafka_offset", "ascending")]
            )
            batches = merged.combine_chunks().to_batches()
        for batch in batches:
            if batch.num_rows:
                self.sink(batch)

    def _per_record(self, records: list) -> pa.RecordBatch | None:
        """Records the vectorised path could not vouch for: every rule, every reason."""
        source, names, fast = self.source, self.names, self.fast
        rows: list[tuple] = []
        kept: list = []
        for message in records:
            value = message.value
            try:
                if value is not None and len(value) > MAX_PAYLOAD_BYTES:
                    raise RecordRejected(
                        "max_size", f"payload of {len(value)} bytes exceeds {MAX_PAYLOAD_BYTES}"
                    )
                row = fast(value) if fast is not None else None
                if row is None:
                    values = bronze_row(source, message)
                    row = tuple(values[name] for name in names)
            except RecordRejected as rejected:
                self.rejects.add(
                    rejected.rule,
                    rejected.reason,
                    raw_text(value),
                    _kafka_topic=message.topic,
                    _kafka_partition=message.partition,
                    _kafka_offset=message.offset,
                )
                continue
            rows.append(row)
            kept.append(message)
        if not rows:
            return None
        columns = {
            name: pa.array(values, self.schema.field(name).type)
            for name, values in zip(self.names, zip(*rows, strict=True), strict=True)
        }
        columns.update(_coordinates(kept))
        return self._record_batch(columns)

    def _record_batch(self, columns: dict[str, pa.Array]) -> pa.RecordBatch:
        n = len(columns["_kafka_offset"])
        columns.update(
            _source=pa.repeat(pa.scalar(self.source.name, pa.string()), n),
            _ingested_at=pa.repeat(pa.scalar(self.ingested_at, pa.timestamp("us", "UTC")), n),
            _run_id=pa.repeat(pa.scalar(self.run_id, pa.string()), n),
        )
        return pa.RecordBatch.from_arrays(
            [columns[f.name].cast(f.type) for f in self.schema], schema=self.schema
        )

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=self.schema)


_TOPIC = attrgetter("topic")
_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")
_TIMESTAMP = attrgetter("timestamp")
_VALUE = attrgetter("value")


def _coordinates(records: list) -> dict[str, pa.Array]:
    """Kafka lineage columns of records of one partition, in offset order (as polled).

    Topic and partition are constant per chunk and offsets dense unless compaction
    or transaction markers left gaps: only the timestamps need a pass over the
    records then (one pass instead of four, ~35 ms less per 200k records).
    """
    first, last, n = records[0], records[-1], len(records)
    if (
        first.topic == last.topic
        and first.partition == last.partition
        and last.offset - first.offset == n - 1
    ):
        return {
            "_kafka_topic": pa.repeat(pa.scalar(first.topic, pa.string()), n),
            "_kafka_partition": pa.repeat(pa.scalar(first.partition, pa.int32()), n),
            "_kafka_offset": pa.array(np.arange(first.offset, last.offset + 1, dtype=np.int64)),
            "_kafka_timestamp": kafka_times(list(map(_TIMESTAMP, records))),
        }
    return {
        "_kafka_topic": pa.array(list(map(_TOPIC, records)), pa.string()),
        "_kafka_partition": pa.array(list(map(_PARTITION, records)), pa.int32()),
        "_kafka_offset": pa.array(list(map(_OFFSET, records)), pa.int64()),
        "_kafka_timestamp": kafka_times(list(map(_TIMESTAMP, records))),
    }


# datetime.max in epoch milliseconds; Kafka timestamps beyond it cannot be stored
_MAX_TIMESTAMP_MS = 253_402_300_799_999


def kafka_times(timestamps_ms: list[int | None]) -> pa.Array:
    """Records' Kafka timestamps; a producer's nonsense value (negative, past year 9999) is null."""
    millis = pa.array(timestamps_ms, pa.int64())
    invalid = pc.or_(pc.less(millis, 0), pc.greater(millis, _MAX_TIMESTAMP_MS))
    valid = pc.if_else(invalid, pa.scalar(None, pa.int64()), millis)
    return valid.cast(pa.timestamp("ms", "UTC")).cast(pa.timestamp("us", "UTC"))


def _value_columns(source: KafkaSource | CdcSource) -> list[str]:
    return [f.name for f in source.layout.schema.fields if not f.name.startswith("_")]


class _EventFastPath:
    """Bronze values of a well-formed JSON event via orjson, or None to take the slow path.

    It only answers for records whose result is certain to equal ``bronze_row``'s:
    orjson accepted the bytes (so valid UTF-8, valid JSON, no lone surrogates), the
    value is an object with every required field, and the extracted fields are text.
    Everything else (non-text fields, NaN, huge integers orjson would turn into
    floats, every reject) goes through ``bronze_row`` with its rules and reasons.
    """

    def __init__(self, source: KafkaSource) -> None:
        self.required = tuple(source.required)
        self.fields = tuple(source.columns.values())

    def __call__(self, value: bytes | None) -> tuple | None:
        if value is None:
            return None
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        if type(event) is not dict:
            return None
        for name in self.required:
            if event.get(name) in (None, ""):
                return None
        row = []
        for name in self.fields:
            field_value = event.get(name)
            if field_value is not None and type(field_value) is not str:
                return None
            row.append(field_value)
        row.append(value.decode("utf-8"))
        return tuple(row)


class _EventColumns:
    """Bronze columns of a whole chunk of JSON events, in Arrow, and the records left over.

    Values are decoded a chunk at a time by Arrow's JSON reader (``_ArrowJson``: C++,
    it releases the GIL, so it overlaps the Kafka client's Python parsing) and,
    where that reader might not agree with the stdlib ``json`` of ``bronze_row``,
    one ``orjson.loads`` per value. Field extraction, the required-field rule, the
    size limit, UTF-8 text and the lineage columns are Arrow kernels over the chunk.
    Like ``_EventFastPath`` it only keeps records whose result is certain to equal
    ``bronze_row``'s: the value decoded to an object, every extracted and required
    field is text or absent, required fields are non-empty and the payload is within
    the limit. Anything the decoders cannot vouch for is null in the decoded column,
    and those records are returned, in order, for the per-record path and its rules
    and reasons.
    """

    def __init__(self, source: KafkaSource) -> None:
        self.required = tuple(source.required)
        self.columns = dict(source.columns)
        fields = dict.fromkeys([*source.columns.values(), *source.required])
        self.struct = pa.struct([(name, pa.string()) for name in fields])
        self.arrow_json = _ArrowJson(self.struct)

    def convert(self, records: list) -> tuple[dict[str, pa.Array], list]:
        values = list(map(_VALUE, records))
        raw = pa.array(values, pa.binary())
        parsed = self._decode(raw, values)
        too_big = pc.fill_null(pc.greater(pc.binary_length(raw), MAX_PAYLOAD_BYTES), True)
        bad = pc.or_(pc.is_null(parsed), too_big)
        for name in self.required:
            field_values = pc.struct_field(parsed, name)
            empty = pc.or_kleene(pc.is_null(field_values), pc.equal(field_values, ""))
            bad = pc.or_kleene(bad, empty)
        bad = pc.fill_null(bad, True)
        leftovers = [records[i] for i in pc.indices_nonzero(bad).to_pylist()]
        good = pc.invert(bad)

        def keep(array: pa.Array) -> pa.Array:
            return pc.filter(array, good) if leftovers else array

        columns = {
            column: keep(pc.struct_field(parsed, name)) for column, name in self.columns.items()
        }
        # a decoder accepted every kept payload, so it is UTF-8 (the cast checks it again)
        columns["payload"] = keep(raw).cast(pa.string())
        columns.update({name: keep(array) for name, array in _coordinates(records).items()})
        return columns, leftovers

    def _decode(self, raw: pa.BinaryArray, values: list) -> pa.StructArray:
        """The decoded object of each value in order, null where no decoder vouches for it."""
        eligible = self.arrow_json.eligible(raw)
        arrow_count = pc.sum(eligible).as_py() or 0
        if arrow_count == len(raw):
            return self._decode_arrow(raw)
        rest = list(compress(values, pc.invert(eligible).to_pylist()))
        if not arrow_count:
            return self._decode_orjson(rest)
        decoded = pa.concat_arrays(
            [self._decode_arrow(pc.filter(raw, eligible)), self._decode_orjson(rest)]
        )
        # back to offset order: the i-th eligible value (from 1) is decoded[i - 1], the
        # i-th other one decoded[arrow_count + i - 1]
        chosen = eligible.cast(pa.int64())
        order = pc.if_else(
            eligible,
            pc.subtract(pc.cumulative_sum(chosen), 1),
            pc.add(pc.cumulative_sum(pc.subtract(1, chosen)), arrow_count - 1),
        )
        return decoded.take(order)

    def _decode_arrow(self, raw: pa.BinaryArray) -> pa.StructArray:
        """Arrow's reader over the chunk; a part it refuses is decoded by orjson instead."""
        decoded = self.arrow_json.decode(raw)
        if decoded is not None:
            return decoded
        # one odd value must not send a whole chunk to the slower decoder: retry in parts
        step = max(_ORJSON_BELOW, -(-len(raw) // _RETRY_PARTS))
        parts = []
        for start in range(0, len(raw), step):
            part = raw.slice(start, step)
            decoded = self.arrow_json.decode(part) if len(part) < len(raw) else None
            parts.append(decoded if decoded is not None else self._decode_orjson(part.to_pylist()))
        return pa.concat_arrays(parts)

    def _decode_orjson(self, values: list) -> pa.StructArray:
        """One ``orjson.loads`` per value; a field Arrow refuses as text nulls them all."""
        events: list = []
        append, loads = events.append, orjson.loads
        for value in values:
            try:
                event = loads(value)
            except orjson.JSONDecodeError:  # also None: not bytes
                append(None)
                continue
            append(event if type(event) is dict else None)
        try:
            return pa.array(events, self.struct)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            # a field that is not text: bronze_row decides, record by record
            return pa.nulls(len(events), self.struct)


# A chunk Arrow's reader refuses is retried in this many parts; parts this small go to orjson.
_RETRY_PARTS = 8
_ORJSON_BELOW = 256

# Values Arrow's JSON reader might read differently from the stdlib ``json``:
# byte-level, so it may also catch harmless values, which orjson then decodes.
#   NUL, CR, LF  the reader splits lines itself, and NUL may end its input
#   \uD800-\uDFFF  escaped surrogates: a lone one is text to ``json`` (rejected by
#                bronze_row as utf8), not to the reader
#   Inf, NaN     the reader takes Inf, -Inf and -NaN as numbers, ``json`` does not
_ARROW_UNSURE = r"[\x00\n\r]|\\u[dD][89a-fA-F]|[:,\[]\s*-?(?:Inf|NaN)"
# ``json`` recurses once per nesting level and fails past the recursion limit (it
# raises RecursionError, not a reject); Arrow's reader has no such limit. A valid
# value this short cannot nest deeper than half its length.
_SHALLOW_BYTES = 512
_MAX_OPENERS = 128
# ``json`` refuses an integer longer than Python's 4,300-digit conversion limit (a
# reject); the reader takes it. A value this short cannot hold one; longer ones with
# a run of 1,000 digits (RE2's largest repeat count) are left to the other decoders.
_SHORT_NUMBERS_BYTES = 4_300
_LONG_DIGITS = r"[0-9]{1000}"


class _ArrowJson:
    """Decodes many JSON values at once with ``pyarrow.json``, or says it cannot vouch.

    The reader is stricter than the stdlib ``json`` of ``bronze_row`` almost
    everywhere (it refuses a number, boolean, object or array where the schema says
    text, a key given twice, control characters in strings, huge exponents); where
    it is laxer or reads differently, ``eligible`` keeps the value away from it.
    Values are joined by newlines; each starts with ``{`` and ends with ``}``, so each
    makes at least one row, and a value holding two objects shows as a row count
    that differs from the value count: the chunk is refused.
    """

    def __init__(self, struct: pa.StructType) -> None:
        self.struct = struct
        self.parse_options = pa_json.ParseOptions(
            explicit_schema=pa.schema(list(struct)),
            unexpected_field_behavior="ignore",
            newlines_in_values=False,
        )
        # a block must hold the longest line: eligible values are at most 1 MiB. One
        # thread: the chunk is already decoded beside the polling thread.
        self.read_options = pa_json.ReadOptions(block_size=4 * MAX_PAYLOAD_BYTES, use_threads=False)

    def eligible(self, raw: pa.BinaryArray) -> pa.BooleanArray:
        """Values the reader is certain to read as ``json`` does (or refuse); no nulls."""
        lengths = pc.binary_length(raw)
        checks = [
            pc.equal(pc.binary_slice(raw, 0, 1), _OPEN),
            pc.equal(pc.binary_slice(raw, -1), _CLOSE),
            pc.less_equal(lengths, MAX_PAYLOAD_BYTES),
            pc.invert(pc.match_substring_regex(raw, _ARROW_UNSURE)),
        ]
        longest = pc.max(lengths).as_py()
        if longest is not None and longest > _SHALLOW_BYTES:
            openers = pc.count_substring_regex(raw, r"[\[{]")
            checks.append(
                pc.or_(pc.less_equal(lengths, _SHALLOW_BYTES), pc.less_equal(openers, _MAX_OPENERS))
            )
        if longest is not None and longest > _SHORT_NUMBERS_BYTES:
            digits = pc.match_substring_regex(raw, _LONG_DIGITS)
            checks.append(pc.or_(pc.less_equal(lengths, _SHORT_NUMBERS_BYTES), pc.invert(digits)))
        eligible = checks[0]
        for check in checks[1:]:
            eligible = pc.and_(eligible, check)
        return pc.fill_null(eligible, False)

    def decode(self, raw: pa.BinaryArray) -> pa.StructArray | None:
        """One object per value (all eligible), or None when the reader refuses any of them."""
        try:
            text = raw.cast(pa.string())  # the reader does not check UTF-8 in every field
            lines = pc.binary_join_element_wise(text, "", "\n")
            _, offsets_buffer, data_buffer = lines.buffers()
            offsets = pa.Array.from_buffers(
                pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset
            )
            start, end = offsets[0].as_py(), offsets[-1].as_py()
            data = data_buffer.slice(start, end - start)
            table = pa_json.read_json(
                pa.BufferReader(data),
                read_options=self.read_options,
                parse_options=self.parse_options,
            )
        except pa.ArrowException:
            return None
        if table.num_rows != len(raw):
            return None  # a value held more than one object
        return pa.StructArray.from_arrays(
            [table.column(field.name).combine_chunks() for field in self.struct],
            fields=list(self.struct),
        )


_OPEN = pa.scalar(b"{", pa.binary())
_CLOSE = pa.scalar(b"}", pa.binary())


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
        change = parse_change(message.value, source.columns, source.connector)
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


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
