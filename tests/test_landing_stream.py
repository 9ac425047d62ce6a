"""Landing files streamed from S3 a chunk at a time: memory follows a chunk, not the object.

Large objects go through moto's real S3 HTTP API into bronze while tracemalloc watches
Python's allocations (the bytes of an object read whole are one Python allocation);
the facts the CSV readers decide by are checked against their definitions at every
chunk edge.
"""

from __future__ import annotations

import codecs
import gzip
import io
import random
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.ingest.landing import body as spooling
from lakehouse.ingest.landing import parsers
from lakehouse.ingest.landing.body import spool
from lakehouse.ingest.landing.reader import BronzeRows, ingest_files, list_new_files
from resources.iceberg import IcebergCatalogResource
from resources.s3 import S3Resource
from tests.test_landing_files import (
    HEADER,
    MARKETING_SPEND,
    _parse,
    _plain_csv,
    _quoted_csv,
    _zstd,
    in_line_order,
)

MIB = 1024 * 1024
# rows, hex digits of each campaign: about 24 MB either way; Parquet rows are checked
# in Python, so fewer and wider
SHAPES = {"csv": (300_000, 40), "parquet": (20_000, 1_100), "jsonl": (20_000, 1_100)}


def _big_csv(rows: int, width: int) -> bytes:
    """Marketing spend, six rows with a spend that is no decimal."""
    rng = random.Random(5)
    lines = [HEADER.rstrip("\n")]
    for n in range(rows):
        spend = "lots" if n % (rows // 6) == 7 else f"{n}.{n % 100:02d}"
        lines.append(f"2026-11-01,email,c{n}-{rng.getrandbits(width * 4):0{width}x},{spend},EUR")
    return ("\n".join(lines) + "\n").encode()


def _big_parquet(rows: int, width: int) -> bytes:
    """The same rows as Parquet in row groups of 2,000 (the spend as text)."""
    table = pa.csv.read_csv(
        io.BytesIO(_big_csv(rows, width)),
        convert_options=pa.csv.ConvertOptions(
            column_types=dict.fromkeys(MARKETING_SPEND.columns, pa.string())
        ),
    )
    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=2_000, compression="none")
    return out.getvalue()


def _big_jsonl(rows: int, width: int) -> bytes:
    """The same rows as JSON lines (CRLF line ends, spend as a number), one line not JSON."""
    import json

    table = pa.csv.read_csv(
        io.BytesIO(_big_csv(rows, width)),
        convert_options=pa.csv.ConvertOptions(
            column_types=dict.fromkeys(MARKETING_SPEND.columns, pa.string())
        ),
    )
    lines = []
    for record in table.to_pylist():
        if record["spend"] != "lots":
            record["spend"] = float(record["spend"])
        lines.append(json.dumps(record, ensure_ascii=False))
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "csv.zst", "parquet", "jsonl"])
def test_a_large_object_lands_without_its_bytes_in_memory(lakehouse_env, monkeypatch, kind):
    """A 23 MB object streams from S3 through the spool and the readers: Python never
    holds more than a few MiB at once (reading the object whole takes its size), and
    every row lands or is quarantined with its line."""
    import pyarrow.csv  # noqa: F401 - pa.csv for the generators

    monkeypatch.setattr(spooling, "SPOOL_CHUNK_BYTES", MIB)
    monkeypatch.setattr(parsers, "CSV_BLOCK_BYTES", MIB)
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 1_000)
    monkeypatch.setattr(BronzeRows, "CHUNK_ROWS", 1_000)  # the per-row path's chunk
    monkeypatch.setattr(parsers, "JSONL_CHUNK_BYTES", MIB)
    rows, width = SHAPES.get(kind, SHAPES["csv"])
    if kind in ("parquet", "jsonl"):
        from lakehouse.declarations.sources import LandingSource

        source = LandingSource(
            name="marketing_spend",
            format=kind,
            prefix=MARKETING_SPEND.key_prefix,
            columns=MARKETING_SPEND.columns,
            keys=MARKETING_SPEND.keys,
        )
        data = (_big_parquet if kind == "parquet" else _big_jsonl)(rows, width)
    else:
        source = MARKETING_SPEND
        data = _big_csv(rows, width)
        data = {"csv": data, "csv.gz": gzip.compress(data, 1), "csv.zst": _zstd(data)}[kind]
    s3 = S3Resource().client()
    bucket = lakehouse_env.landing_bucket
    s3.put_object(Bucket=bucket, Key=f"{source.key_prefix}big.{kind}", Body=data)
    catalog = IcebergCatalogResource().load()
    keys = list_new_files(s3, bucket, source, set(), 10)
    size = len(data) if "." not in kind else len(_big_csv(rows, width))  # as read
    assert size > 16 * MIB
    del data
    tracemalloc.start()
    try:
        batch = ingest_files(catalog, s3, bucket, source, keys, "run-1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a few 1 MiB chunks and blocks in flight (about 9 MiB); the object read whole is 23
    assert peak < size / 2, f"Python held {peak / MIB:.1f} MiB of a {size / MIB:.1f} MiB file"
    assert (batch.rows_read, batch.landed, batch.quarantined) == (rows, rows - 6, 6)
    bronze = catalog.load_table(source.bronze_table).scan().to_arrow()
    assert bronze.num_rows == rows - 6
    lines = sorted(bronze["_row"].to_pylist())
    first = 1 if kind in ("parquet", "jsonl") else 2  # a CSV's line 1 is its header
    bad = {first + n for n in range(7, rows, rows // 6)}
    assert lines == [line for line in range(first, rows + first) if line not in bad]
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    assert sorted(r["_row"] for r in rejects) == sorted(bad)
    assert all("spend: 'lots' is not a decimal(12,2)" in r["_reason"] for r in rejects)


def _jsonl_text(rng: random.Random) -> str:
    """JSON lines as the spec and ``str.splitlines`` see them: LF and CRLF ends, blank
    and whitespace-only lines, a BOM, text that is not JSON, arrays, values that do
    not fit, non-ASCII text (split across chunk edges), and the other characters
    Python's splitlines breaks at (CR alone, U+2028, U+0085, form feed) inside values."""
    records = [
        '{"spend_date": "2026-11-01", "channel": "email", "campaign": "c", "spend": 1.5, '
        '"currency": "EUR"}',
        '{"spend_date": "2026-11-02", "channel": "ads", "campaign": "é€😀", "spend": "2", '
        '"currency": "EUR"}',
        '{"spend_date": "2026-11-31", "channel": "x", "campaign": "c", "spend": 1, '
        '"currency": "EUR"}',
        '{"spend_date": "2026-11-03", "channel": "x", "campaign": "a\\u2028b\\rc", '
        '"spend": 3, "currency": "EUR"}',
        '{"spend_date": "2026-11-03", "channel": "x", "campaign": "a\u2028b", "spend": 3, '
        '"currency": "EUR"}',
        '{"spend_date": "2026-11-03", "channel": "x\x85y\x0cz\rw", "campaign": "c", "spend": 4, '
        '"currency": "EUR"}',
        "not json",
        "[1, 2]",
        "",
        "   ",
    ]
    ends = ["\n", "\r\n"]
    lines = [rng.choice(records) + rng.choice(ends) for _ in range(rng.randint(0, 30))]
    return rng.choice(["", "\ufeff"]) + "".join(lines) + rng.choice(["", records[0]])


def test_json_lines_decoded_in_chunks_are_the_whole_texts_lines():
    """A JSON-lines file decoded a few bytes at a time lands, counts and quarantines
    exactly what decoding the whole text does: same rows, line numbers and reasons."""
    from datetime import UTC, datetime

    from lakehouse.declarations.sources import LandingSource
    from lakehouse.ingest.landing.reader import LandedRows
    from lakehouse.ingest.records import QuarantineBuffer

    source = LandingSource(
        name="marketing_spend",
        format="jsonl",
        columns=MARKETING_SPEND.columns,
        keys=MARKETING_SPEND.keys,
    )
    at = datetime(2026, 11, 23, tzinfo=UTC)
    uri = "s3://landing/x.jsonl"

    def parse(lines) -> tuple[int, list, list]:
        rows, rejects = LandedRows(), QuarantineBuffer("marketing_spend", "run", at)
        count = parsers._parse_jsonl(lines, uri, source, rows, rejects)
        landed = rows.to_arrow(source.layout.arrow_schema(), "m", at, "run").to_pylist()
        return count, landed, rejects.rows

    rng = random.Random(23)
    texts = [_jsonl_text(rng) for _ in range(120)]
    assert sum("\u2028" in t for t in texts) > 40
    for text in texts:
        data = text.encode()
        want = parse(text.removeprefix("\ufeff").splitlines())
        for chunk in (1, 3, 64):
            body = parsers.spooled(data, uri, source)
            assert body.facts.utf8
            got = parse(parsers._jsonl_lines(body, chunk))
            assert got == want, (text, chunk)
    assert sum(len(parse(t.splitlines())[2]) for t in texts) > 300


def _reference_facts(data: bytes) -> dict:
    """The facts by their definitions, over the whole file at once."""
    cut = data.find(b"\n")
    try:
        data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    return {
        "size": len(data),
        "space_only": not data or data.isspace(),
        "first_line": data if cut < 0 else data[:cut],
        "first_lf": cut,
        "lf": data.count(b"\n"),
        "cr": data.count(b"\r"),
        "crlf": data.count(b"\r\n"),
        "quote_after_first_line": cut >= 0 and b'"' in data[cut + 1 :],
        "nul": b"\x00" in data,
        "blank_line": b"\n\n" in data,
        "lf_cr": b"\n\r" in data,
        "utf8": utf8,
        "ends_lf": data.endswith(b"\n"),
    }


def test_facts_gathered_chunk_by_chunk_are_the_whole_files_facts():
    """Random bytes (line breaks, quotes, NULs, spaces, a multi-byte character that a
    chunk edge can split, a stray continuation byte) spooled in chunks of 1 to 9 bytes:
    every fact equals its definition over the whole file."""
    rng = random.Random(11)
    alphabet = [b"a", b",", b"\n", b"\r", b"\r\n", b'"', b" ", b"\x00", "é".encode(), b"\x80"]
    weights = [30, 10, 10, 3, 5, 3, 5, 1, 4, 1]
    for _ in range(400):
        parts = rng.choices(alphabet, weights, k=rng.randint(0, 40))
        data = b"".join(parts)
        want = _reference_facts(data)
        for chunk in range(1, 10):
            facts = spool(io.BytesIO(data), "none", text=True, chunk=chunk).facts
            got = {name: getattr(facts, name) for name in want}
            assert got == want, (data, chunk)
            assert facts.compression_error is None


@pytest.mark.parametrize("make", [_quoted_csv, _plain_csv], ids=["quoted", "plain"])
def test_files_spooled_in_tiny_chunks_read_as_the_csv_module_reads_them(monkeypatch, make):
    """The decisions taken from the spool's facts (Arrow's reader or the csv module,
    line numbers, the lost-line-break check) hold at every chunk edge: files spooled 3
    bytes at a time, read by Arrow in 256-byte blocks, land and quarantine exactly what
    the csv module path does."""
    rng = random.Random(17)
    texts = [make(rng, True) if make is _plain_csv else make(rng) for _ in range(200)]
    monkeypatch.setattr(spooling, "SPOOL_CHUNK_BYTES", 3)
    monkeypatch.setattr(parsers, "CSV_BLOCK_BYTES", 256)
    fast = [_parse(t) for t in texts]
    monkeypatch.setattr(parsers, "_plain", lambda text: False)
    monkeypatch.setattr(parsers, "_arrow_csv_applies", lambda facts, columns: False)
    reference = [_parse(t) for t in texts]
    assert sum(len(r[2]) for r in reference) > 300
    for text, got, want in zip(texts, fast, reference, strict=True):
        assert in_line_order(got) == in_line_order(want), text


class _Dropped(io.RawIOBase):
    """A response body whose connection drops after ``good`` bytes, as a socket does."""

    def __init__(self, data: bytes, good: int) -> None:
        self.data, self.good, self.at = data, good, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.at >= self.good:
            raise ConnectionResetError(104, "Connection reset by peer")
        size = self.good - self.at if size < 0 else min(size, self.good - self.at)
        self.at += size
        return self.data[self.at - size : self.at]

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_a_connection_lost_while_decompressing_is_an_error_not_a_bad_file(compression):
    """An OSError from the network mid-stream fails the fetch (the batch is retried);
    only bytes that do not decompress make the file's compression reason."""
    data = (HEADER + "2026-11-01,email,c,1.5,EUR\n" * 50_000).encode()
    packed = gzip.compress(data) if compression == "gzip" else _zstd(data)
    with pytest.raises(ConnectionResetError):
        spool(_Dropped(packed, len(packed) // 2), compression, text=True, chunk=4096)
    cut = spool(io.BytesIO(packed[: len(packed) // 2]), compression, text=True, chunk=4096)
    assert cut.facts.compression_error and compression in cut.facts.compression_error
    whole = spool(io.BytesIO(packed), compression, text=True, chunk=4096)
    assert whole.facts.compression_error is None and whole.read() == data


# --- the csv module and splitlines paths: the text decoded a chunk at a time ----------

LINE_PIECES = ["a", ",", '"', "\n", "\r", "\r\n", "\u2028", "\x85", "\x0c", "\x1c", "é", "😀", " "]


def test_lines_of_chunks_are_the_whole_texts_lines():
    """Text cut into chunks of 1 to 9 characters (a CRLF split across chunks, a lone CR
    at a chunk's end, every character splitlines breaks at): the lines are exactly
    those the csv module gets from ``io.StringIO(text, newline="")``, and splitlines'."""
    rng = random.Random(29)
    for _ in range(500):
        text = "".join(rng.choices(LINE_PIECES, k=rng.randint(0, 40)))
        for size in range(1, 10):
            chunks = [text[i : i + size] for i in range(0, len(text), size)]
            got = list(parsers._lines(chunks, csv_lines=True))
            assert got == list(io.StringIO(text, newline="")), (text, size)
            assert list(parsers._lines(chunks)) == text.splitlines(), (text, size)


BYTE_PIECES = [
    b"a",
    b"\n",
    b"\r",
    "é".encode(),
    "€".encode(),
    "😀".encode(),
    b"\xe9",
    b"\x80",
    b"\x81",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"\x00",
    b"\x00\xd8",
    b"\x00\xdc",
]


@pytest.mark.parametrize(
    "encoding", ["utf-8-sig", "utf-8", "utf-16", "utf-16-le", "utf-32", "cp1252", "latin-1"]
)
def test_text_decoded_in_chunks_is_the_whole_decode_and_fails_with_its_message(encoding):
    """Random bytes (a BOM or not, characters and invalid sequences a chunk edge can
    split) decoded 1 to 7 bytes at a time: the same text, or the same error message,
    position included, as decoding the whole file."""
    rng = random.Random(31)
    failed = 0
    for _ in range(300):
        head = rng.choice([b"", codecs.BOM_UTF8, b"\xff\xfe"])
        data = head + b"".join(rng.choices(BYTE_PIECES, k=rng.randint(0, 12)))
        try:
            want, error = data.decode(encoding), None
        except UnicodeDecodeError as exc:
            want, error = None, str(exc)
            failed += 1
        body = spool(io.BytesIO(data), "none", text=True)
        for chunk in range(1, 8):
            try:
                got = "".join(parsers._decoded(body, encoding, chunk))
                assert (got, None) == (want, error), (data, chunk)
            except parsers._Undecodable as exc:
                assert (None, str(exc)) == (want, error), (data, chunk)
    assert failed > 30 or encoding == "latin-1"  # latin-1 decodes every byte


def _jsonl_source(**dialect):
    from lakehouse.declarations.sources import LandingSource

    return LandingSource(
        name="marketing_spend",
        format="jsonl",
        columns=MARKETING_SPEND.columns,
        keys=MARKETING_SPEND.keys,
        dialect=dialect,
    )


def _csv_module_text(rng: random.Random) -> str:
    """A default-dialect CSV the csv module reads: quoted fields (line breaks inside),
    blank lines, lone CRs, CRLFs, non-ASCII text."""
    text = _quoted_csv(rng)
    pieces = []
    for line in text.split("\n"):
        pieces.append(line)
        pieces.append(rng.choice(["\n", "\n", "\n", "\n\n", "\r", "\r\n"]))
    return "".join(pieces[:-1]) + rng.choice(["", "\n", "\r"])


def _dialect_text(rng: random.Random, delimiter: str) -> str:
    from tests.test_landing_files import _dialect_file

    text = _dialect_file(delimiter=delimiter, null="NA").decode()
    lines = text.split("\r\n")
    for _ in range(rng.randint(0, 25)):  # more rows: a note over two lines, bad values
        n = rng.randint(4, 99)
        note = rng.choice(['"two\nlines"', '"lone\rcr"', "é€", '"a;b,c"', ""])
        amount = rng.choice(["1.25", "NA", "x", "123456789.1"])
        lines.insert(rng.randint(1, len(lines)), delimiter.join([str(n), amount, "NA", note]))
    return rng.choice(["\r\n", "\n", "\r"]).join(lines) + rng.choice(["", "\n\n"])


def _jsonl_text_any_breaks(rng: random.Random) -> str:
    return rng.choice(["\r", "\u2028", "\n"]).join(_jsonl_text(rng).splitlines())


def _shaped_files(rng: random.Random) -> list[tuple[object, bytes]]:
    """Files the csv module or splitlines reads: another dialect or encoding, blank
    lines, lone CRs, a BOM, JSON lines in other encodings or with no LF, and bytes that
    do not decode."""
    from tests.test_landing_files import _dialect_source

    semicolon = _dialect_source(delimiter=";", null_values=["NA"], encoding="latin-1")
    utf16 = _dialect_source(delimiter="\t", null_values=["NA"], encoding="utf-16")
    files = []
    for _ in range(40):
        text = _csv_module_text(rng)
        files.append((MARKETING_SPEND, rng.choice(["", "\ufeff"]).encode() + text.encode()))
        files.append((semicolon, _dialect_text(rng, ";").encode("latin-1", "replace")))
        files.append((utf16, _dialect_text(rng, "\t").encode("utf-16")))
        jsonl = _jsonl_text_any_breaks(rng)
        files.append((_jsonl_source(), jsonl.encode()))
        files.append((_jsonl_source(encoding="utf-16"), jsonl.encode("utf-16")))
        files.append((_jsonl_source(encoding="latin-1"), jsonl.encode("latin-1", "replace")))
        broken = text.encode()
        cut = rng.randint(0, len(broken))
        files.append((MARKETING_SPEND, broken[:cut] + b"\xff" + broken[cut:]))
    return files


def _parse_any(source, data: bytes) -> tuple:
    """What parse_file lands (rows as dicts), counts and quarantines, or what it raises."""
    from datetime import UTC, datetime

    from lakehouse.ingest.landing.reader import LandedRows
    from lakehouse.ingest.records import QuarantineBuffer

    rows = LandedRows()
    rejects = QuarantineBuffer(source.name, "run", datetime(2026, 11, 23, tzinfo=UTC))
    try:
        count = parsers.parse_file(data, "s3://landing/x", source, rows, rejects, arrow=False)
    except Exception as exc:  # noqa: BLE001 - compared: the same error, from the same row
        count = repr(exc)
    landed = rows.dicts + [r for t in rows.tables for r in t.to_pylist()]
    return count, landed, rejects.rows


def test_files_decoded_a_chunk_at_a_time_read_as_their_whole_text(monkeypatch):
    """Every shape of ``_shaped_files`` decoded 1, 2, 5 or 64 bytes at a time lands,
    counts and quarantines exactly what one chunk holding the whole file does (the text
    as one string, as the csv module and splitlines read it before): same rows, line
    numbers, rules, reasons and raw text."""
    files = _shaped_files(random.Random(37))
    monkeypatch.setattr(parsers, "TEXT_CHUNK_BYTES", 1 << 30)
    monkeypatch.setattr(parsers, "JSONL_CHUNK_BYTES", 1 << 30)
    whole = [_parse_any(source, data) for source, data in files]
    assert sum(len(rejects) for _, _, rejects in whole) > 300
    assert sum(len(landed) for _, landed, _ in whole) > 1_000
    assert sum(r["_rule"] == "utf8" for _, _, rejects in whole for r in rejects) > 20
    for chunk in (1, 2, 5, 64):
        monkeypatch.setattr(parsers, "TEXT_CHUNK_BYTES", chunk)
        monkeypatch.setattr(parsers, "JSONL_CHUNK_BYTES", chunk)
        for (source, data), want in zip(files, whole, strict=True):
            assert _parse_any(source, data) == want, (source.name, data, chunk)


class _Counted:
    """A rows sink that keeps nothing: what a caller handing each chunk on holds."""

    def __init__(self) -> None:
        self.rows = 0

    def append(self, row: dict) -> None:
        self.rows += 1

    def add_table(self, table: pa.Table) -> None:
        self.rows += table.num_rows


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_large_file_in_another_encoding_is_read_without_its_text_in_memory(monkeypatch, encoding):
    """A 6 MB CSV the csv module reads (semicolons, quoted notes over two lines, another
    encoding) decoded 256 KiB at a time: Python's peak follows the chunk (a dozen
    chunks: the bytes, their text, its lines, the carried line, the csv module's rows),
    where the text read whole took its size, its bytes as much again, and the csv
    module's StringIO four bytes a character; every row lands or is quarantined with
    its line."""
    from datetime import UTC, datetime

    from lakehouse.ingest.records import QuarantineBuffer
    from tests.test_landing_files import _dialect_source

    chunk = 256 * 1024
    monkeypatch.setattr(parsers, "TEXT_CHUNK_BYTES", chunk)
    source = _dialect_source(delimiter=";", null_values=["NA"], encoding=encoding)
    rows = 90_000 if encoding == "latin-1" else 45_000
    lines = ["id;amount;day;note"]
    for n in range(rows):
        amount = "lots" if n % (rows // 4) == 3 else f"{n % 1000}.{n % 100:02d}"
        lines.append(f'{n};{amount};2026-11-01;"Café {n:09d}\r\nsecond line of note {n:07d}"')
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    assert len(data) > 24 * chunk
    body = parsers.spooled(data, "s3://landing/big.csv", source)
    del data, lines
    landed = _Counted()
    rejects = QuarantineBuffer(source.name, "run", datetime(2026, 11, 23, tzinfo=UTC))
    tracemalloc.start()
    try:
        count = parsers.parse_file(body, "s3://landing/big.csv", source, landed, rejects)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        body.close()
    assert peak < 12 * chunk, f"Python held {peak / MIB:.1f} MiB of {body.size / MIB:.1f}"
    assert (count, landed.rows) == (rows, rows - 4)
    assert [r["_row"] for r in rejects.rows] == [2 + 3 + k * (rows // 4) for k in range(4)]
