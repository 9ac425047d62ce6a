"""Landing bucket -> bronze over moto's real S3 HTTP API: each file once, bad rows quarantined."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from lakehouse.declarations.sources import sources
from lakehouse.ingest.landing import parsers
from lakehouse.ingest.landing.parsers import parse_file
from lakehouse.ingest.landing.reader import (
    LandedRows,
    ingest_files,
    ingested_files,
    list_new_files,
    split_version,
)
from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.settings import get_settings
from resources.iceberg import IcebergCatalogResource
from resources.s3 import S3Resource

HEADER = "spend_date,channel,campaign,spend,currency\n"
MARKETING_SPEND = sources().landing_source("marketing_spend")


def test_files_are_ingested_once_and_bad_ones_quarantined(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    bucket = settings.landing_bucket
    s3.put_object(
        Bucket=bucket, Key="marketing_spend/a.csv", Body=HEADER + "2026-11-01,email,c1,1.5,EUR\n"
    )
    s3.put_object(Bucket=bucket, Key="marketing_spend/empty.csv", Body=b"")
    s3.put_object(Bucket=bucket, Key="marketing_spend/wrong_header.csv", Body="a,b\n1,2\n")
    s3.put_object(
        Bucket=bucket,
        Key="marketing_spend/mixed.csv",
        Body=HEADER + "2026-11-02,search,c2,3.0,EUR\n2026-11-02,search\n",
    )
    s3.put_object(Bucket=bucket, Key="other_source/x.csv", Body=HEADER)
    catalog = IcebergCatalogResource().load()

    keys = list_new_files(s3, bucket, MARKETING_SPEND, set(), limit=100)
    assert [split_version(k)[0] for k in keys] == [
        "marketing_spend/a.csv",
        "marketing_spend/empty.csv",
        "marketing_spend/mixed.csv",
        "marketing_spend/wrong_header.csv",
    ]
    batch = ingest_files(catalog, s3, bucket, MARKETING_SPEND, keys, "run-1")
    assert batch.landed == 2
    assert sorted(batch.files_quarantined) == [
        "marketing_spend/empty.csv",
        "marketing_spend/wrong_header.csv",
    ]
    quarantine = catalog.load_table(MARKETING_SPEND.quarantine_table).scan().to_arrow().to_pylist()
    by_rule = {r["_rule"]: r for r in quarantine}
    assert set(by_rule) == {"empty_file", "header", "column_count"}
    assert by_rule["column_count"]["_row"] == 3
    assert by_rule["column_count"]["_file"] == f"s3://{bucket}/marketing_spend/mixed.csv"

    # the same keys again: nothing lands twice; the sensor's listing is empty
    again = ingest_files(catalog, s3, bucket, MARKETING_SPEND, keys, "run-2")
    assert again.files == [] and again.landed == 0
    done = ingested_files(catalog, MARKETING_SPEND)
    assert list_new_files(s3, bucket, MARKETING_SPEND, done, limit=100) == []
    bronze = catalog.load_table(MARKETING_SPEND.bronze_table)
    assert bronze.scan().to_arrow().num_rows == 2
    # the layout's writer property on top of every table's
    assert bronze.properties["write.parquet.dict-size-bytes"] == str(256 * 1024)
    assert bronze.properties["commit.retry.num-retries"] == "0"


def test_listing_pages_through_more_than_a_thousand_objects(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    for i in range(1005):
        s3.put_object(
            Bucket=settings.landing_bucket, Key=f"marketing_spend/f{i:05d}.csv", Body=HEADER
        )
    bucket = settings.landing_bucket
    everything = list_new_files(s3, bucket, MARKETING_SPEND, set(), limit=5000)
    assert len(everything) == 1005
    keys = list_new_files(s3, bucket, MARKETING_SPEND, {everything[0]}, limit=5000)
    assert len(keys) == 1004 and split_version(keys[0])[0] == "marketing_spend/f00001.csv"


def _source(fmt: str):
    from lakehouse.declarations.sources import LandingSource

    return LandingSource(
        name=f"partner_{fmt}",
        format=fmt,
        columns={"id": "long", "amount": "decimal(8,2)", "day": "date"},
        keys=("id",),
    )


def test_jsonl_rows_are_checked_against_the_declared_types(lakehouse_env):
    settings = lakehouse_env
    source = _source("jsonl")
    s3 = S3Resource().client()
    lines = [
        '{"id": 1, "amount": "10.50", "day": "2026-11-01"}',
        '{"id": "two", "amount": "1", "day": "2026-11-01"}',
        "not json",
        "[1, 2]",
        '{"id": 3, "amount": 2.5, "day": "2026-11-02", "extra": "kept out"}',
        '{"id": 4, "deep": ' + "[" * 5000 + "]" * 5000 + "}",  # valid, too deep for json
    ]
    s3.put_object(
        Bucket=settings.landing_bucket, Key="partner_jsonl/a.jsonl", Body="\n".join(lines)
    )
    catalog = IcebergCatalogResource().load()
    batch = ingest_files(
        catalog, s3, settings.landing_bucket, source, ["partner_jsonl/a.jsonl"], "run-1"
    )
    assert (batch.rows_read, batch.landed, batch.quarantined) == (6, 2, 4)
    rows = catalog.load_table(source.bronze_table).scan().to_arrow().to_pylist()
    assert [(r["id"], r["amount"], r["_row"]) for r in rows] == [("1", "10.50", 1), ("3", "2.5", 5)]
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    assert sorted((r["_row"], r["_rule"]) for r in rejects) == [
        (2, "schema"),
        (3, "json"),
        (4, "json_object"),
        (6, "json"),
    ]
    assert "id: 'two' is not a long" in next(r["_reason"] for r in rejects if r["_row"] == 2)


def test_parquet_files_and_a_truncated_parquet_file(lakehouse_env):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    settings = lakehouse_env
    source = _source("parquet")
    s3 = S3Resource().client()
    table = pa.table({"id": [1, 2], "amount": [1.25, 3.333], "day": ["2026-11-01", "2026-11-02"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    good = buffer.getvalue()
    s3.put_object(Bucket=settings.landing_bucket, Key="partner_parquet/good.parquet", Body=good)
    s3.put_object(
        Bucket=settings.landing_bucket,
        Key="partner_parquet/cut.parquet",
        Body=good[: len(good) // 2],
    )
    catalog = IcebergCatalogResource().load()
    keys = list_new_files(s3, settings.landing_bucket, source, set(), 10)
    batch = ingest_files(catalog, s3, settings.landing_bucket, source, keys, "run-1")
    assert batch.files_quarantined == ["partner_parquet/cut.parquet"]
    assert (batch.landed, batch.quarantined, batch.records_in) == (1, 2, 3)
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    rules = sorted(r["_rule"] for r in rejects)
    assert rules == ["parquet", "schema"]  # 3.333 has too many decimals for decimal(8,2)


def test_a_file_uploaded_again_with_new_content_is_ingested_again(lakehouse_env):
    """Partners re-send corrected files under the same name: the version is key + ETag."""
    settings = lakehouse_env
    s3 = S3Resource().client()
    bucket = settings.landing_bucket
    key = "marketing_spend/2026-11-01.csv"
    catalog = IcebergCatalogResource().load()
    s3.put_object(Bucket=bucket, Key=key, Body=HEADER + "2026-11-01,email,c1,1.50,EUR\n")
    first = list_new_files(s3, bucket, MARKETING_SPEND, set(), 10)
    assert ingest_files(catalog, s3, bucket, MARKETING_SPEND, first, "run-1").landed == 1
    done = ingested_files(catalog, MARKETING_SPEND)
    assert list_new_files(s3, bucket, MARKETING_SPEND, done, 10) == []

    s3.put_object(Bucket=bucket, Key=key, Body=HEADER + "2026-11-01,email,c1,2.50,EUR\n")
    second = list_new_files(s3, bucket, MARKETING_SPEND, done, 10)
    assert len(second) == 1 and second != first
    # the file changes again between listing and reading: that version is left for later
    s3.put_object(Bucket=bucket, Key=key, Body=HEADER + "2026-11-01,email,c1,3.50,EUR\n")
    stale = ingest_files(catalog, s3, bucket, MARKETING_SPEND, second, "run-2")
    assert stale.landed == 0 and stale.files_changed == [key]
    done = ingested_files(catalog, MARKETING_SPEND)
    latest = list_new_files(s3, bucket, MARKETING_SPEND, done, 10)
    assert ingest_files(catalog, s3, bucket, MARKETING_SPEND, latest, "run-3").landed == 1
    table = catalog.load_table(MARKETING_SPEND.bronze_table)
    assert sorted(table.scan().to_arrow()["spend"].to_pylist()) == ["1.50", "3.50"]


VALUES = {
    "spend_date": ["2026-11-01", "2026-02-30", "yesterday", "", " 2026-11-01"],
    "channel": ["email", "", " search ", "social media", "é"],
    "campaign": ["c-1", "", "c 2", "NULL", "NA"],
    "spend": ["1.5", "12", "-0.25", "n/a", "1.234", "1e3", "", "9999999999.99", "99999999999"],
    "currency": ["EUR", "", "usd"],
}


def _plain_csv(rng: random.Random, blank_lines: bool) -> str:
    lines = [HEADER.rstrip("\n")]
    for _ in range(rng.randint(0, 40)):
        roll = rng.random()
        if roll < 0.05:
            lines.append(" ")
        elif roll < 0.1:
            lines.append(",".join(rng.choice(VALUES["spend"]) for _ in range(rng.randint(1, 7))))
        elif roll < 0.15 and blank_lines:
            lines.append("")
        else:
            lines.append(",".join(rng.choice(options) for options in VALUES.values()))
    return "\n".join(lines) + rng.choice(["", "\n"])


def _parse(text: str) -> tuple[int, list[dict], list[dict]]:
    rows = LandedRows()
    at = datetime(2026, 11, 23, tzinfo=UTC)
    rejects = QuarantineBuffer("marketing_spend", "run", at)
    try:
        count = parse_file(text.encode(), "s3://landing/x.csv", MARKETING_SPEND, rows, rejects)
    except parsers.ArrowGaveUp:  # as ingest_files does, by starting the batch again
        rows, rejects = LandedRows(), QuarantineBuffer("marketing_spend", "run", at)
        count = parse_file(
            text.encode(), "s3://landing/x.csv", MARKETING_SPEND, rows, rejects, arrow=False
        )
    schema = MARKETING_SPEND.layout.arrow_schema()
    landed = rows.to_arrow(schema, "marketing_spend", at, "run").to_pylist()
    return count, landed, rejects.rows


def in_line_order(parsed):
    """Rejects in line order: a streamed file's rejects come block by block."""
    count, landed, rejects = parsed
    return count, landed, sorted(rejects, key=lambda r: (r["_row"], r["_rule"]))


@pytest.mark.parametrize("blank_lines", [False, True], ids=["arrow-reader", "line-split"])
def test_plain_csv_paths_agree_with_the_csv_module(monkeypatch, blank_lines):
    """Arrow's CSV reader (and the line-split path a file with blank lines takes)
    land, count and quarantine exactly what the per-row csv-module path does: same
    rows, line numbers, rules, reasons and raw text."""
    rng = random.Random(7 if blank_lines else 3)
    texts = [_plain_csv(rng, blank_lines) for _ in range(300)]
    assert all(parsers._plain(t) for t in texts)
    if blank_lines:
        assert sum("\n\n" in t for t in texts) > 100
    fast = [_parse(t) for t in texts]
    monkeypatch.setattr(parsers, "_plain", lambda text: False)
    monkeypatch.setattr(parsers, "_arrow_csv_applies", lambda data, columns: False)
    reference = [_parse(t) for t in texts]
    assert sum(len(r[2]) for r in reference) > 500  # the cases do exercise quarantine
    for text, got, want in zip(texts, fast, reference, strict=True):
        assert in_line_order(got) == in_line_order(want), text


QUOTED = ['"a,b"', '"say ""hi"""', '"two\nlines"', 'x"y', '"ab"c', '""', '"é, \r\n"']


def _quoted_csv(rng: random.Random) -> str:
    """Files in the default dialect with quoted fields (delimiters, doubled quotes and
    line breaks inside quotes, quotes inside unquoted fields, text after a closing
    quote), CRLF or LF line ends, rows with too few or too many fields, values that do
    not fit."""
    lines = [HEADER.rstrip("\n")]
    for _ in range(rng.randint(0, 40)):
        fields = [rng.choice(options) for options in VALUES.values()]
        for n in range(len(fields)):
            if rng.random() < 0.25:
                fields[n] = rng.choice(QUOTED)
        if rng.random() < 0.08:
            fields = fields[: rng.randint(1, 4)] if rng.random() < 0.5 else [*fields, "x"]
        lines.append(",".join(fields))
    end = rng.choice(["\n", "\r\n"])
    return end.join(lines) + rng.choice(["", end])


def test_arrow_reads_quoted_csv_as_the_csv_module_does(monkeypatch):
    """Arrow's streaming reader (blocks far smaller than a file, so records straddle
    blocks) lands, counts and quarantines exactly what the csv module path does."""
    rng = random.Random(13)
    texts = [_quoted_csv(rng) for _ in range(300)]
    monkeypatch.setattr(parsers, "CSV_BLOCK_BYTES", 256)
    arrow_read = []
    real = parsers._parse_arrow_csv

    def spy(*args):
        count = real(*args)
        arrow_read.append(count is not None)
        return count

    monkeypatch.setattr(parsers, "_parse_arrow_csv", spy)
    fast = [_parse(t) for t in texts]
    assert sum(arrow_read) > 250  # most files do take Arrow's reader
    monkeypatch.setattr(parsers, "_arrow_csv_applies", lambda data, columns: False)
    reference = [_parse(t) for t in texts]
    assert sum(len(r[2]) for r in reference) > 500
    assert sum(r["_rule"] == "column_count" for _, _, rejects in reference for r in rejects) > 50
    for text, got, want in zip(texts, fast, reference, strict=True):
        assert in_line_order(got) == in_line_order(want), text


def test_column_checks_quarantine_what_the_row_check_does():
    """The column-wise check (every CSV path) lands and quarantines exactly what
    checking each row on its own does (``_check_row``, the JSON/Parquet/by-name
    path): same rows, and for bad ones the same rule, reason (every problem, in
    declared order), raw text and line."""
    rng = random.Random(11)
    records = [[rng.choice(options) for options in VALUES.values()] for _ in range(600)]
    at = datetime(2026, 11, 23, tzinfo=UTC)
    uri = "s3://landing/x.csv"
    schema = MARKETING_SPEND.layout.arrow_schema()

    rows, rejects = LandedRows(), QuarantineBuffer("marketing_spend", "run", at)
    columns = [pa.array(column, pa.large_string()) for column in zip(*records, strict=True)]
    lines = pa.array(range(2, len(records) + 2), pa.int64())
    parsers._land_columns(columns, lines, uri, MARKETING_SPEND, rows, rejects)

    want_rows, want = LandedRows(), QuarantineBuffer("marketing_spend", "run", at)
    for line, values in enumerate(records, start=2):
        record = dict(zip(MARKETING_SPEND.columns, values, strict=True))
        raw = ",".join(values)
        parsers._check_row(record, line, raw, uri, MARKETING_SPEND, want_rows, want)

    assert sum("; " in r["_reason"] for r in want.rows) > 20  # rows with several problems
    assert rejects.rows == want.rows
    landed = rows.to_arrow(schema, "marketing_spend", at, "run").to_pylist()
    assert landed == want_rows.to_arrow(schema, "marketing_spend", at, "run").to_pylist()


def test_blank_line_scan_agrees_with_a_substring_search_across_chunk_edges():
    rng = random.Random(5)
    for _ in range(5000):
        data = bytes(rng.choice(b"a\n") for _ in range(rng.randint(0, 12)))
        for chunk in (1, 2, 3, 1 << 20):
            assert parsers._has_blank_line(data, chunk) == (b"\n\n" in data), (data, chunk)


# --- dialects declared in sources.yml ------------------------------------------------

DIALECT_ROWS = [(1, "10.50", "2026-11-01"), (2, None, "2026-11-02"), (3, "7.25", None)]


def _dialect_source(**dialect):
    from lakehouse.declarations.sources import LandingSource

    return LandingSource(
        name="partner_dialect",
        format="csv",
        columns={"id": "long", "amount": "decimal(8,2)", "day": "date", "note": "string"},
        keys=("id",),
        dialect=dialect,
    )


def _dialect_file(delimiter=",", null="", header=True, encoding="utf-8", compress=None) -> bytes:
    """Three rows with a missing amount and a missing day, and a note that needs quoting
    and holds a non-ASCII character; written as the dialect says."""
    import gzip

    lines = [delimiter.join(["id", "amount", "day", "note"])] if header else []
    for n, amount, day in DIALECT_ROWS:
        note = f'"Café {delimiter} ""{n}"""'
        lines.append(delimiter.join([str(n), amount or null, day or null, note]))
    body = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if compress == "gzip":
        return gzip.compress(body)
    if compress == "zstd":
        return _zstd(body)
    return body


def _zstd(body: bytes) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as stream:
        stream.write(body)
    return sink.getvalue().to_pybytes()


DIALECTS = {
    # id: (dialect declared in sources.yml, how the file is written, key suffix)
    "semicolon-NA": (
        {"delimiter": ";", "null_values": ["NA"]},
        {"delimiter": ";", "null": "NA"},
        "",
    ),
    "backslash-N": ({"null_values": ["\\N"]}, {"null": "\\N"}, ""),
    "no-header": ({"header": False, "null_values": [""]}, {"header": False}, ""),
    "latin-1": ({"encoding": "latin-1", "null_values": [""]}, {"encoding": "latin-1"}, ""),
    "utf-8-bom": ({"null_values": [""]}, {"encoding": "utf-8-sig"}, ""),
    "gzip": ({"null_values": [""]}, {"compress": "gzip"}, ".gz"),
    "zstd": ({"null_values": [""]}, {"compress": "zstd"}, ".zst"),
    "tab-gzip-declared": (
        {"delimiter": "\t", "compression": "gzip", "null_values": [""]},
        {"delimiter": "\t", "compress": "gzip"},
        "",
    ),
}


@pytest.mark.parametrize("case", sorted(DIALECTS))
def test_a_declared_dialect_lands_every_row_with_its_nulls(lakehouse_env, case):
    declared, written, suffix = DIALECTS[case]
    settings = lakehouse_env
    source = _dialect_source(**declared)
    s3 = S3Resource().client()
    key = f"partner_dialect/{case}.csv{suffix}"
    s3.put_object(Bucket=settings.landing_bucket, Key=key, Body=_dialect_file(**written))
    catalog = IcebergCatalogResource().load()
    batch = ingest_files(catalog, s3, settings.landing_bucket, source, [key], "run-1")
    assert (batch.rows_read, batch.landed, batch.quarantined) == (3, 3, 0), case
    rows = catalog.load_table(source.bronze_table).scan().to_arrow().to_pylist()
    got = sorted((r["id"], r["amount"], r["day"], r["note"]) for r in rows)
    assert got == [
        (str(n), amount, day, f'Café {written.get("delimiter", ",")} "{n}"')
        for n, amount, day in DIALECT_ROWS
    ]


def test_a_file_in_another_dialect_is_quarantined_whole_naming_the_setting(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    catalog = IcebergCatalogResource().load()
    files = {
        "semicolons.csv": (_dialect_file(delimiter=";"), "header", "dialect"),
        "latin.csv": (_dialect_file(encoding="latin-1"), "utf8", "dialect.encoding"),
        "not-gzip.csv.gz": (_dialect_file(), "compression", "dialect.compression"),
    }
    for key, (body, _, _) in files.items():
        s3.put_object(Bucket=settings.landing_bucket, Key=f"partner_dialect/{key}", Body=body)
    source = _dialect_source()
    keys = [f"partner_dialect/{k}" for k in files]
    batch = ingest_files(catalog, s3, settings.landing_bucket, source, keys, "run-1")
    assert (batch.landed, batch.quarantined) == (0, 3)
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    by_file = {r["_file"].rsplit("/", 1)[-1]: r for r in rejects}
    for key, (_, rule, setting) in files.items():
        assert by_file[key]["_rule"] == rule, key
        assert setting in by_file[key]["_reason"] and "sources.yml" in by_file[key]["_reason"]


@pytest.mark.parametrize(
    ("fmt", "dialect", "message"),
    [
        ("csv", {"delimiter": ";;"}, "delimiter must be one character"),
        ("csv", {"delimiter": ";", "quote": ";"}, "must be different characters"),
        ("csv", {"encoding": "klingon"}, "unknown encoding"),
        ("csv", {"sep": ";"}, "dialect.sep"),
        ("jsonl", {"delimiter": ";"}, "dialect.delimiter applies to csv files"),
        ("parquet", {"compression": "gzip"}, "dialect.compression does not apply to parquet"),
    ],
)
def test_an_impossible_dialect_fails_when_sources_load(fmt, dialect, message):
    from pydantic import ValidationError

    from lakehouse.declarations.sources import LandingSource

    with pytest.raises(ValidationError) as error:
        LandingSource(name="bad", format=fmt, columns={"id": "long"}, dialect=dialect)
    text = str(error.value).replace("\n", " ")
    assert message in text or (message == "dialect.sep" and "dialect.sep" in text)


# --- timestamps: offsets kept, naive ones in the declared zone; Parquet physical types ---


def _typed_source(fmt: str, columns: dict[str, str], **dialect):
    from lakehouse.declarations.sources import LandingSource

    return LandingSource(
        name=f"partner_typed_{fmt}", format=fmt, columns=columns, keys=("id",), dialect=dialect
    )


def _land_and_type(source, files: dict[str, bytes]):
    """Put ``files`` in the landing bucket, ingest them and build silver: the batch,
    silver's rows by id and quarantine's rows."""
    from lakehouse.defs.silver.builds import silver_shape
    from lakehouse.silver.typed import TypedBuild

    s3 = S3Resource().client()
    bucket = get_settings().landing_bucket
    for name, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"{source.key_prefix}{name}", Body=body)
    catalog = IcebergCatalogResource().load()
    keys = list_new_files(s3, bucket, source, set(), 100)
    batch = ingest_files(catalog, s3, bucket, source, keys, "run-1")
    TypedBuild(catalog, source, silver_shape(source, None), "silver-run").run()
    silver = catalog.load_table(f"silver.{source.name}").scan().to_arrow().to_pylist()
    rejects = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    return batch, {r["id"]: r for r in silver}, rejects


BERLIN_TIMES = [
    # id, text in the file, the instant silver holds (UTC)
    (1, "2026-01-15T10:00:00", datetime(2026, 1, 15, 9, tzinfo=UTC)),  # naive, CET
    (2, "2026-07-15 10:00:00.250", datetime(2026, 7, 15, 8, 0, 0, 250000, tzinfo=UTC)),  # CEST
    (3, "2026-07-15T10:00:00Z", datetime(2026, 7, 15, 10, tzinfo=UTC)),  # Z kept
    (4, "2026-07-15T10:00:00-05:00", datetime(2026, 7, 15, 15, tzinfo=UTC)),  # offset kept
    (5, "2026-10-25T02:30:00", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),  # fold: the first
    (6, "2026-03-29T02:30:00", None),  # clocks jumped 02:00 -> 03:00: quarantined
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_naive_timestamps_are_wall_time_in_the_declared_zone(lakehouse_env, fmt):
    import json

    source = _typed_source(fmt, {"id": "long", "at": "timestamp"}, time_zone="Europe/Berlin")
    if fmt == "csv":
        body = "id,at\n" + "".join(f"{n},{text}\n" for n, text, _ in BERLIN_TIMES)
    else:
        body = "".join(json.dumps({"id": n, "at": text}) + "\n" for n, text, _ in BERLIN_TIMES)
    batch, silver, rejects = _land_and_type(source, {f"times.{fmt}": body.encode()})
    assert (batch.rows_read, batch.landed, batch.quarantined) == (6, 5, 1)
    assert {n: row["at"] for n, row in silver.items()} == {
        n: at for n, _, at in BERLIN_TIMES if at is not None
    }
    (reject,) = rejects
    assert reject["_row"] == (7 if fmt == "csv" else 6)
    assert "does not exist in Europe/Berlin" in reject["_reason"]
    assert "dialect.time_zone" in reject["_reason"]


def test_naive_timestamps_default_to_utc(lakehouse_env):
    source = _typed_source("csv", {"id": "long", "at": "timestamp"})
    body = b"id,at\n1,2026-03-29T02:30:00\n2,2026-03-29T02:30:00+02:00\n"
    batch, silver, _ = _land_and_type(source, {"utc.csv": body})
    assert batch.landed == 2
    assert silver[1]["at"] == datetime(2026, 3, 29, 2, 30, tzinfo=UTC)
    assert silver[2]["at"] == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)


def _parquet(columns: dict[str, pa.Array]) -> bytes:
    import io

    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer)
    return buffer.getvalue()


PARQUET_DECLARED = {
    "id": "long",
    "code": "string",
    "amount": "decimal(12,2)",
    "ratio": "double",
    "day": "date",
    "at": "timestamp",
}
WINTER_NOON_UTC = datetime(2026, 1, 15, 11, tzinfo=UTC)  # 12:00 in Berlin


def _physical(unit: str, tz: str | None = None, at: datetime = WINTER_NOON_UTC) -> bytes:
    """One row whose every column has a physical type other than the declared one's
    own, but that holds its values without loss."""
    from decimal import Decimal

    wall = at.astimezone(ZoneInfo(tz or "Europe/Berlin")).replace(tzinfo=None)
    stamp = pa.array([at if tz else wall], pa.timestamp(unit, tz))
    return _parquet(
        {
            "id": pa.array([7], pa.int32()),
            "code": pa.array(["A7"]).dictionary_encode(),
            "amount": pa.array([Decimal("123.45")], pa.decimal128(5, 2)),
            "ratio": pa.array([0.5], pa.float32()),
            "day": pa.array([date(2026, 1, 15)], pa.date32()),
            "at": stamp,
        }
    )


@pytest.mark.parametrize(
    "case",
    ["timestamp-ms", "timestamp-us", "timestamp-ns", "timestamp-s-utc", "timestamp-ms-tokyo"],
)
def test_parquet_in_lossless_physical_types_is_read(lakehouse_env, case):
    """int32 for long, dictionary strings, a narrower decimal, float32, date32, and
    timestamps in every unit, naive (wall time in the declared zone) or with a zone."""
    from decimal import Decimal

    _, unit, *zone = case.split("-")
    tz = {"utc": "UTC", "tokyo": "Asia/Tokyo"}.get(zone[0]) if zone else None
    source = _typed_source("parquet", PARQUET_DECLARED, time_zone="Europe/Berlin")
    batch, silver, rejects = _land_and_type(source, {f"{case}.parquet": _physical(unit, tz)})
    assert (batch.rows_read, batch.landed, batch.quarantined, rejects) == (1, 1, 0, [])
    row = silver[7]
    assert row == {
        "id": 7,
        "code": "A7",
        "amount": Decimal("123.45"),
        "ratio": 0.5,
        "day": date(2026, 1, 15),
        "at": WINTER_NOON_UTC,
    }


def test_parquet_values_that_would_lose_digits_are_quarantined(lakehouse_env):
    """Nanoseconds below a microsecond, a string that is not a long, an int64 out of
    int's range: each row is quarantined with its reason; the rest of the file lands."""
    source = _typed_source(
        "parquet", {"id": "long", "small": "int", "at": "timestamp", "n": "long"}
    )
    at_ns = int(WINTER_NOON_UTC.timestamp()) * 10**9
    body = _parquet(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "small": pa.array([1, 2**31, 3, 4], pa.int64()),
            "at": pa.array([at_ns, at_ns, at_ns + 1, at_ns + 1000], pa.timestamp("ns", "UTC")),
            "n": pa.array(["10", "11", "12", "two"]),
        }
    )
    batch, silver, rejects = _land_and_type(source, {"lossy.parquet": body})
    assert (batch.rows_read, batch.landed, batch.quarantined) == (4, 1, 3)
    assert silver[1]["n"] == 10 and silver[1]["at"] == WINTER_NOON_UTC
    reasons = {r["_row"]: r["_reason"] for r in rejects}
    assert "small: 2147483648 is out of range for int" in reasons[2]
    assert "at:" in reasons[3] and "sub-microsecond" in reasons[3]
    assert "n: 'two' is not a long" in reasons[4]


def test_a_file_arrow_gives_up_on_part_way_is_read_again_by_the_csv_module(
    lakehouse_env, monkeypatch
):
    """Blocks of 64 bytes make CRLFs inside quoted values straddle blocks, where Arrow
    loses a line break: the batch starts over with that file read by the csv module,
    and nothing is landed twice or lost."""
    from lakehouse.ingest.landing import reader

    monkeypatch.setattr(parsers, "CSV_BLOCK_BYTES", 64)
    calls = []
    real = reader.parse_file

    def spy(*args, arrow=True):
        calls.append(arrow)
        return real(*args, arrow=arrow)

    monkeypatch.setattr(reader, "parse_file", spy)
    lines = [HEADER.rstrip("\n")]
    lines += [f'2026-11-01,email,"c\r\n{n}",{n}.5,EUR' for n in range(200)]
    s3 = S3Resource().client()
    bucket = lakehouse_env.landing_bucket
    s3.put_object(Bucket=bucket, Key="marketing_spend/crlf.csv", Body="\r\n".join(lines))
    s3.put_object(
        Bucket=bucket, Key="marketing_spend/plain.csv", Body=HEADER + "2026-11-02,a,b,1,EUR\n"
    )
    catalog = IcebergCatalogResource().load()
    keys = list_new_files(s3, bucket, MARKETING_SPEND, set(), 10)
    batch = ingest_files(catalog, s3, bucket, MARKETING_SPEND, keys, "run-1")
    assert calls.count(False) == 1  # the CRLF file, once more
    assert (batch.rows_read, batch.landed, batch.quarantined) == (201, 201, 0)
    rows = catalog.load_table(MARKETING_SPEND.bronze_table).scan().to_arrow().to_pylist()
    campaigns = sorted(r["campaign"] for r in rows if r["_file"].endswith("crlf.csv"))
    assert campaigns == sorted(f"c\r\n{n}" for n in range(200))
    assert sorted(r["_row"] for r in rows if r["_file"].endswith("crlf.csv")) == list(range(2, 202))


def test_a_batch_is_bounded_by_bytes_as_well_as_by_files(lakehouse_env):
    s3 = S3Resource().client()
    bucket = lakehouse_env.landing_bucket
    for n, size in enumerate([400, 300, 500, 200]):
        body = HEADER + "x" * (size - len(HEADER))
        s3.put_object(Bucket=bucket, Key=f"marketing_spend/{n}.csv", Body=body)

    def listed(limit, max_bytes):
        keys = list_new_files(s3, bucket, MARKETING_SPEND, set(), limit, max_bytes)
        return [split_version(k)[0].rsplit("/", 1)[-1] for k in keys]

    assert listed(10, 700) == ["0.csv", "1.csv"]
    assert listed(10, 1200) == ["0.csv", "1.csv", "2.csv"]
    assert listed(2, 10_000) == ["0.csv", "1.csv"]
    assert listed(10, 100) == ["0.csv"]  # a file larger than the bound still moves alone
    assert listed(10, None) == ["0.csv", "1.csv", "2.csv", "3.csv"]


def test_a_file_that_fails_after_rows_left_is_quarantined_whole(lakehouse_env, monkeypatch):
    """A field over the csv module's size limit late in a file it reads (a declared
    dialect): the file's first rows were already handed to the writer, so the batch
    starts over with the file quarantined whole; the other file lands, none of this one."""
    import csv

    from lakehouse.ingest.landing import reader

    monkeypatch.setattr(reader.BronzeRows, "CHUNK_ROWS", 10)
    source = _dialect_source(delimiter=";")
    rows = "".join(f"{n};1.50;2026-11-01;x\n" for n in range(100))
    s3 = S3Resource().client()
    bucket = lakehouse_env.landing_bucket
    s3.put_object(Bucket=bucket, Key="partner_dialect/a.csv", Body="id;amount;day;note\n" + rows)
    too_long = "id;amount;day;note\n" + rows + "7;1.00;2026-11-02;" + "y" * 500 + "\n"
    s3.put_object(Bucket=bucket, Key="partner_dialect/b.csv", Body=too_long)
    catalog = IcebergCatalogResource().load()
    keys = list_new_files(s3, bucket, source, set(), 10)
    limit = csv.field_size_limit(100)
    try:
        batch = ingest_files(catalog, s3, bucket, source, keys, "run-1")
    finally:
        csv.field_size_limit(limit)
    assert batch.files_quarantined == ["partner_dialect/b.csv"]
    assert (batch.rows_read, batch.landed, batch.quarantined) == (100, 100, 1)
    landed = catalog.load_table(source.bronze_table).scan().to_arrow()
    assert set(landed["_file"].to_pylist()) == {f"s3://{bucket}/partner_dialect/a.csv"}
    (reject,) = catalog.load_table(source.quarantine_table).scan().to_arrow().to_pylist()
    assert reject["_rule"] == "csv" and "field larger than field limit" in reject["_reason"]
