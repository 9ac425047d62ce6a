"""The chunk decoders of Kafka ingestion agree with the per-record ``bronze_row``.

Bronze rows of JSON events are decoded a chunk at a time (Arrow's JSON reader, orjson
where Arrow might read a value differently). ``bronze_row`` with the stdlib ``json``
is the definition of what lands and what is quarantined with which rule and reason;
every odd payload here goes through both and must come out the same.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from lakehouse.declarations.sources import sources
from lakehouse.ingest.kafka import decode
from lakehouse.ingest.kafka.decode import MAX_PAYLOAD_BYTES, BronzeBuilder, bronze_row
from lakehouse.ingest.records import QuarantineBuffer, RecordRejected, raw_text

INGESTED_AT = datetime(2026, 11, 2, tzinfo=UTC)


@dataclass(frozen=True)
class Record:
    """What the polling loop hands over: the kafka-python ConsumerRecord fields used."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def _event(rng: random.Random, i: int) -> dict:
    event = {
        "event_id": f"e-{i}",
        "event_type": rng.choice(["page_view", "add_to_cart", "checkout"]),
        "user_id": f"u-{rng.randint(0, 99)}",
        "session_id": f"s-{rng.randint(0, 9)}",
        "page": rng.choice(["/", "/cart", "/product/p-1"]),
        "product_id": rng.choice([None, "p-1"]),
        "ts": "2026-11-01T10:00:00.123Z",
    }
    if rng.random() < 0.3:
        event["extra"] = {"nested": [1, 2.5, "x", None, True, {"k": [[]]}]}
    return event


def _odd_field_values() -> list[str]:
    """JSON texts of field values: what stdlib json, orjson and Arrow may disagree on."""
    return [
        "1",
        "-0",
        "1.5e3",
        "1E+2",
        "123456789012345678901234567890",
        "1e999",
        "true",
        "false",
        "null",
        "[]",
        '["a"]',
        "{}",
        '{"a": "b"}',
        "NaN",
        "Infinity",
        "-Infinity",
        "Inf",
        "-Inf",
        "-NaN",
        '""',
        '"plain"',
        '"caf\\u00e9"',
        '"\\u0000"',
        '"\\ud800"',
        '"\\udc00x"',
        '"\\ud83d\\ude00"',
        '"\\uD83D\\uDE00"',
        '"\\n\\t\\"\\\\\\/\\b\\f\\r"',
        '"\\q"',
        '"\\u12"',
        '"café ☕ 😀"',
        '"tab\there"',
        '"nul\x00here"',
        '"line\nbreak"',
        '"del\x7f"',
        "01",
        "1.",
        ".5",
        "+1",
        "0x10",
        "tru",
        "'single'",
        '"NaN"',
        '"Information: Inf, NaN"',
        '"a\\u0022b"',
        "[" * 40 + "]" * 40,
    ]


def _mutations() -> list:
    def field_value(rng, text, event):
        name = rng.choice(["event_id", "user_id", "ts", "page", "session_id", "extra", "zz"])
        body = json.dumps(event)[1:-1]
        return ("{" + body + f', "{name}": ' + rng.choice(_odd_field_values()) + "}").encode()

    def replace_field(rng, text, event):
        name = rng.choice(["event_id", "event_type", "user_id", "ts", "page"])
        rest = {k: v for k, v in event.items() if k != name}
        body = json.dumps(rest)[1:-1]
        value = rng.choice(_odd_field_values())
        return ("{" + f'"{name}": {value}' + (", " + body if body else "") + "}").encode()

    def duplicate_key(rng, text, event):
        name = rng.choice(["event_id", "user_id", "ts", "extra"])
        value = rng.choice(['"dup"', "null", '""', "1"])
        return text[:-1] + f', "{name}": {value}}}'.encode()

    def drop_required(rng, text, event):
        event = dict(event)
        event.pop(rng.choice(["event_id", "event_type", "user_id", "ts"]), None)
        return json.dumps(event).encode()

    def empty_required(rng, text, event):
        event = dict(event, **{rng.choice(["event_id", "user_id"]): ""})
        return json.dumps(event).encode()

    def escaped_key(rng, text, event):
        return text.replace(b'"user_id"', rng.choice([b'"user\\u005fid"', b'"user\\/id"']))

    def ascii_escapes(rng, text, event):
        event = dict(event, page=rng.choice(["/café", "/日本", "/😀", "/\u2028"]))
        return json.dumps(event, ensure_ascii=rng.random() < 0.5).encode()

    def pretty(rng, text, event):
        return json.dumps(event, indent=rng.choice([None, 2])).encode().replace(b", ", b",\r\n")

    def whitespace(rng, text, event):
        pad = rng.choice([b" ", b"\t", b"\n", b"\r\n", b"\x0c", b"\xc2\xa0", b"\x00"])
        where = rng.choice(["before", "after", "inside"])
        if where == "before":
            return pad + text
        if where == "after":
            return text + pad
        return text.replace(b":", b":" + pad, 1)

    def truncate(rng, text, event):
        return text[: rng.randint(0, len(text))]

    def append_junk(rng, text, event):
        return text + rng.choice([b"x", b"}", b" {}", b'{"event_id":"e"}', b",", b"]"])

    def two_objects(rng, text, event):
        return text + rng.choice([b"", b" ", b"\n"]) + text

    def not_an_object(rng, text, event):
        return rng.choice([b"[" + text + b"]", b'"text"', b"42", b"null", b"true", b"", b"{}"])

    def bad_bytes(rng, text, event):
        junk = rng.choice([b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"])
        at = rng.randint(0, len(text))
        return text[:at] + junk + text[at:]

    def flip_byte(rng, text, event):
        at = rng.randrange(max(1, len(text)))
        return text[:at] + bytes([rng.randrange(256)]) + text[at + 1 :]

    def comment_or_trailing_comma(rng, text, event):
        return text[:-1] + rng.choice([b" /* c */}", b",}", b" // c\n}"])

    def bom(rng, text, event):
        return b"\xef\xbb\xbf" + text

    def deep(rng, text, event):
        depth = rng.choice([10, 200, 300])
        return text[:-1] + b', "deep": ' + b"[" * depth + b"]" * depth + b"}"

    def huge_int(rng, text, event):
        # json refuses more than 4,300 digits; orjson refuses past a double's range
        digits = rng.choice([20, 400, 4300, 4301, 6000])
        return text[:-1] + b', "n": ' + b"9" * digits + b"}"

    return [
        huge_int,
        field_value,
        replace_field,
        duplicate_key,
        drop_required,
        empty_required,
        escaped_key,
        ascii_escapes,
        pretty,
        whitespace,
        truncate,
        append_junk,
        two_objects,
        not_an_object,
        bad_bytes,
        flip_byte,
        comment_or_trailing_comma,
        bom,
        deep,
    ]


def _payloads(seed: int, count: int, odd_share: float) -> list[bytes | None]:
    rng = random.Random(seed)
    mutations = _mutations()
    values: list[bytes | None] = []
    for i in range(count):
        event = _event(rng, i)
        text = json.dumps(event).encode()
        if rng.random() < odd_share:
            for _ in range(rng.choice([1, 1, 1, 2, 3])):
                text = rng.choice(mutations)(rng, text, event) or b" "
            if rng.random() < 0.01:
                text = None
        values.append(text)
    return values


def _records(values: list[bytes | None], partition: int = 0) -> list[Record]:
    return [
        Record("events.clickstream", partition, 1000 + i, 1_700_000_000_000 + i, b"k", value)
        for i, value in enumerate(values)
    ]


def _expected(source, records: list[Record]) -> tuple[list[tuple], list[tuple]]:
    """Rows and rejects, record by record, with the rules of ``bronze_row``."""
    names = [f.name for f in source.layout.schema.fields if not f.name.startswith("_")]
    rows, rejects = [], []
    for record in records:
        value = record.value
        try:
            if value is not None and len(value) > MAX_PAYLOAD_BYTES:
                raise RecordRejected(
                    "max_size", f"payload of {len(value)} bytes exceeds {MAX_PAYLOAD_BYTES}"
                )
            row = bronze_row(source, record)
        except RecordRejected as rejected:
            rejects.append((record.offset, rejected.rule, rejected.reason, raw_text(value)))
            continue
        rows.append((record.partition, record.offset, *(row[name] for name in names)))
    return rows, rejects


def _built(source, records: list[Record], chunk_sizes: list[int]) -> tuple[list, list]:
    schema = source.layout.arrow_schema()
    rejects = QuarantineBuffer(source.name, "run", INGESTED_AT)
    builder = BronzeBuilder(source, schema, "run", INGESTED_AT, rejects)
    start = 0
    for size in chunk_sizes:
        if start < len(records):
            builder.add(records[start : start + size])
        start += size
    table = builder.table()
    assert table.schema == schema
    names = [f.name for f in source.layout.schema.fields if not f.name.startswith("_")]
    columns = ["_kafka_partition", "_kafka_offset", *names]
    rows = list(zip(*(table[c].to_pylist() for c in columns), strict=True))
    assert set(table["_source"].to_pylist()) <= {source.name}
    assert set(table["_run_id"].to_pylist()) <= {"run"}
    got_rejects = [(r["_kafka_offset"], r["_rule"], r["_reason"], r["_raw"]) for r in rejects.rows]
    return rows, sorted(got_rejects)


@pytest.fixture
def arrow_rows(monkeypatch) -> list[int]:
    """How many values Arrow's reader decoded: the fast path must really be exercised."""
    decoded: list[int] = []
    real = decode._ArrowJson.decode

    def spy(self, raw):
        result = real(self, raw)
        if result is not None:
            decoded.append(len(result))
        return result

    monkeypatch.setattr(decode._ArrowJson, "decode", spy)
    return decoded


ODD_SHARES = [0.3, 0.05, 0.8, 0.01, 0.5, 1.0, 0.002, 0.1, 0.2, 0.9]


@pytest.mark.parametrize("seed", range(len(ODD_SHARES)))
def test_chunk_decoding_matches_bronze_row_on_generated_odd_payloads(seed, arrow_rows):
    source = sources().kafka_source("clickstream")
    values = _payloads(seed, 3000, odd_share=ODD_SHARES[seed])
    records = _records(values, partition=seed % 3)
    rng = random.Random(seed)
    chunks = [rng.choice([1, 7, 300, 1000, 5000]) for _ in range(len(records))]
    expected_rows, expected_rejects = _expected(source, records)
    rows, rejects = _built(source, records, chunks)
    assert rejects == sorted(expected_rejects)
    assert rows == expected_rows
    assert len(rows) + len(rejects) == len(records)
    if ODD_SHARES[seed] <= 0.5:  # else every chunk may well hold a value Arrow refuses
        assert sum(arrow_rows) > 0


def test_each_odd_payload_alone_in_a_chunk_of_good_events(arrow_rows):
    """One odd value among 600 good ones: it gets bronze_row's verdict, the rest still land."""
    source = sources().kafka_source("clickstream")
    rng = random.Random(11)
    good = [json.dumps(_event(rng, i)).encode() for i in range(600)]
    odd = [
        b'{"event_id": "e", "event_type": "t", "user_id": "u", "ts": "t"' + b', "x": ' + v + b"}"
        for v in (t.encode() for t in _odd_field_values())
    ]
    odd += [
        b'{"event_id": ' + v.encode() + b', "event_type": "t", "user_id": "u", "ts": "t"}'
        for v in _odd_field_values()
    ]
    odd += [
        None,
        b"",
        b"{}",
        b'{"event_id": "e", "event_type": "t", "user_id": "u", "ts": "t"}\n{"a": "b"}',
        b'{"event_id": "e", "event_type": "t", "user_id": "u", "ts": "t"}{"event_id": "f"}',
        b"{" + b'"pad": "' + b"x" * (MAX_PAYLOAD_BYTES + 10) + b'"}',
        b'{"event_id": "e", "event_type": "t", "user_id": "u", "ts": "t", "d": '
        + b"[" * 3000
        + b"]" * 3000
        + b"}",
        # valid JSON that json cannot decode: an integer past Python's 4,300 digits
        b'{"event_id": "e", "event_type": "t", "user_id": "u", "ts": "t", "n": '
        + b"7" * 5000
        + b"}",
    ]
    for value in odd:
        values = [*good[:300], value, *good[300:]]
        records = _records(values)
        expected = _expected(source, records)
        rows, rejects = _built(source, records, [len(records)])
        assert (rows, rejects) == (expected[0], sorted(expected[1])), value[:80] if value else value
    assert sum(arrow_rows) >= 600 * len(odd) * 0.6  # a refused part goes to orjson


def test_arrow_reader_takes_plain_events_and_leaves_doubtful_ones():
    source = sources().kafka_source("clickstream")
    columns = decode._EventColumns(source)
    plain = json.dumps({"event_id": "e", "user_id": "u", "page": "/café"}, ensure_ascii=False)
    doubtful = [
        b'{"a": "\\ud800"}',
        b'{"a": Inf}',
        b'{"a": [1, -NaN]}',
        b'{"a":\n"b"}',
        b'{"a": "b"}\r',
        b'{"a": "\x00"}',
        b' {"a": "b"}',
        b"[1]",
        b"{" + b"[" * 300 + b"]" * 300 + b"}",
        None,
    ]
    raw = pa.array([plain.encode(), b'{"a": "\\u00e9 Info"}', *doubtful], pa.binary())
    assert columns.arrow_json.eligible(raw).to_pylist() == [True, True] + [False] * len(doubtful)
