"""Parquet and JSON-lines files checked column by column land exactly what checking
each row as Python values did (the paths before issue 18's item 2, kept here as the
reference): same text, ``_file`` and ``_row`` for every good row, same rule, reason,
raw text and line for every reject, same count, same columns."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lakehouse.declarations.sources import LandingSource
from lakehouse.ingest.landing import parsers, reader
from lakehouse.ingest.landing.reader import LandedRows
from lakehouse.ingest.records import QuarantineBuffer, RecordRejected, decode_json

URI = "s3://landing/partner/file"
AT = datetime(2026, 12, 7, tzinfo=UTC)
DECLARED = [
    "string",
    "int",
    "long",
    "double",
    "decimal(5,2)",
    "decimal(18,4)",
    "decimal(38,10)",
    "date",
    "timestamp",
    "boolean",
]


# --- the row-by-row reference: the paths as they were, verbatim ---------------------


def rows_parquet(body, uri, source, rows, rejects) -> int:
    """``_parse_parquet`` before the columnar check: each row as Python values."""
    parquet = pq.ParquetFile(body.random_access(), pre_buffer=False)
    names = parquet.schema_arrow.names
    if not parsers._declared_in(names, source, uri):
        missing = [c for c in source.columns if c not in names]
        reason = f"missing declared columns {missing}; file has {names}"
        rejects.add("header", reason, None, _file=uri, _row=None)
        return 0
    first = 1
    for batch in parquet.iter_batches(batch_size=parsers.PARQUET_BATCH_ROWS):
        for line, record in enumerate(batch.to_pylist(), start=first):
            raw = json.dumps(record, default=str)
            parsers._check_row(record, line, raw, uri, source, rows, rejects)
        first += batch.num_rows
    return parquet.metadata.num_rows


def rows_jsonl(lines, uri, source, rows, rejects) -> int:
    """``_parse_jsonl`` before the columnar check: each record checked on its own."""
    count = 0
    keys: set[str] = set()
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            record = decode_json(raw)
        except RecordRejected as rejected:
            rejects.add(rejected.rule, rejected.reason, raw[:4096], _file=uri, _row=line)
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            rejects.add("json_object", f"a JSON {kind}, not an object", raw, _file=uri, _row=line)
            continue
        keys.update(record)
        parsers._check_row(record, line, raw[:4096], uri, source, rows, rejects)
    if keys:
        parsers._declared_in(sorted(keys), source, uri)
    return count


def landed(data: bytes, source: LandingSource) -> tuple[int, list[str], list[dict], list[dict]]:
    """What parsing ``data`` lands: count, columns, good rows (every column, a missing
    one null, as bronze stores them), rejects, in the order they were added."""
    rows, rejects = LandedRows(), QuarantineBuffer(source.name, "run", AT)
    count = parsers.parse_file(data, URI, source, rows, rejects)
    columns = sorted(rows.columns())
    good = [{c: d.get(c) for c in columns} for d in rows.dicts]
    for table in rows.tables:
        table.validate(full=True)  # as written to bronze: no bytes Python would refuse
        good += [{c: r.get(c) for c in columns} for r in table.to_pylist()]
    return count, columns, sorted(good, key=lambda r: r["_row"]), rejects.rows


def both(data: bytes, source: LandingSource, monkeypatch) -> tuple[Any, Any]:
    """(columnar, row by row) results of the same file."""
    got = landed(data, source)
    with monkeypatch.context() as patch:
        patch.setattr(parsers, "_parse_parquet", rows_parquet)
        patch.setattr(parsers, "_parse_jsonl", rows_jsonl)
        want = landed(data, source)
    return got, want


def source(fmt: str, columns: dict[str, str], zone: str = "Europe/Berlin") -> LandingSource:
    dialect = {"time_zone": zone}
    return LandingSource(name="partner", format=fmt, columns=columns, dialect=dialect)


# --- Parquet: every physical and logical type the format documents --------------------

BERLIN_GAP = datetime(2026, 3, 29, 2, 30)  # a wall time Europe/Berlin skipped
STAMPS = [
    datetime(2026, 1, 2, 3, 4, 5),
    datetime(2026, 1, 2, 3, 4, 5, 123000),
    datetime(2026, 1, 2, 3, 4, 5, 123456),
    datetime(1969, 12, 31, 23, 59, 59, 999000),
    datetime(1, 1, 1, 0, 0),
    datetime(9999, 12, 31, 23, 59, 59),
    BERLIN_GAP,
    datetime(2026, 10, 25, 2, 30),  # a wall time Europe/Berlin showed twice
]


def _ints(bits: int, signed: bool) -> list[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return [low, high, 0, 1, 7, high // 3, 2**31 - 1, 2**31, 10**5]


def _fits(values: list[int], bits: int, signed: bool) -> list[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return [v for v in values if low <= v <= high]


def _decimals(precision: int, scale: int) -> list[Decimal]:
    top = 10**precision - 1
    units = [0, 1, -1, 5, 123, -4567, top, -top, top // 7, 10 ** (precision // 2)]
    return [Decimal(f"{u}E-{scale}") for u in units]  # exact: no context rounding


FLOATS = [0.0, -0.0, 1.0, 5.0, 0.1, -2.5, 1e16, 1.5e-7, 1e300, 123456789.125, 2.0**53]
SPECIAL = [float("nan"), float("inf"), float("-inf")]


def parquet_columns() -> dict[str, tuple[pa.DataType, list[Any]]]:
    """column -> (Arrow type, the values rows draw from; None among them)."""
    columns: dict[str, tuple[pa.DataType, list[Any]]] = {}
    for bits in (8, 16, 32, 64):
        signed = getattr(pa, f"int{bits}")(), _ints(bits, True)
        columns[f"int{bits}"] = signed
        columns[f"uint{bits}"] = getattr(pa, f"uint{bits}")(), _ints(bits, False)
    for name in list(columns):
        kind, values = columns[name]
        columns[name] = kind, _fits(values, kind.bit_width, pa.types.is_signed_integer(kind))
    columns["float32"] = pa.float32(), FLOATS + SPECIAL + [3.4e38]
    columns["float64"] = pa.float64(), FLOATS + SPECIAL
    for precision, scale in [(5, 2), (9, 3), (18, 4), (18, 0), (30, 10), (38, 20), (38, 0)]:
        columns[f"dec{precision}_{scale}"] = (
            pa.decimal128(precision, scale),
            _decimals(precision, scale),
        )
    columns["dec50_5"] = pa.decimal256(50, 5), _decimals(50, 5)
    columns["date32"] = (
        pa.date32(),
        [
            date(2026, 2, 28),
            date(2024, 2, 29),
            date(2026, 12, 31),
            date(999, 1, 1),
            date(1, 1, 1),
            date(9999, 12, 31),
        ],
    )
    columns["date64"] = pa.date64(), [date(2026, 1, 30), date(1970, 1, 1)]
    for unit in ("ms", "us", "ns"):
        stamps = [s.replace(microsecond=s.microsecond // 1000 * 1000) for s in STAMPS]
        stamps = stamps if unit == "ms" else STAMPS
        if unit == "ns":
            stamps = [s for s in stamps if 1677 < s.year < 2262]
        columns[f"ts_{unit}"] = pa.timestamp(unit), stamps
        columns[f"ts_{unit}_utc"] = pa.timestamp(unit, "UTC"), stamps
        columns[f"ts_{unit}_berlin"] = pa.timestamp(unit, "Europe/Berlin"), stamps[:4]
    columns["ts_ns_sub_us"] = pa.timestamp("ns"), [1_700_000_000_000_000_001, 0, 999]
    columns["ts_us_offset"] = pa.timestamp("us", "+05:30"), STAMPS[:3]
    columns["time32"] = pa.time32("ms"), [time(0, 0), time(12, 30, 1, 500000)]
    columns["time64"] = pa.time64("us"), [time(23, 59, 59, 999999), time(1, 2)]
    columns["time64ns"] = pa.time64("ns"), [0, 86_399_999_999_999]
    columns["bool"] = pa.bool_(), [True, False]
    texts = ["", "a", "é ü 中文 🙂", "12", "-3", "1.50", "2026-01-31", "true", "0", " 7 ", "x,y"]
    texts += ["2026-01-02T03:04:05+02:00", "2026-03-29T02:30:00", "1e5", "NaN", "99999999999"]
    columns["string"] = pa.string(), texts
    columns["large_string"] = pa.large_string(), texts
    columns["dict_string"] = pa.dictionary(pa.int32(), pa.string()), texts[:6]
    columns["binary"] = pa.binary(), [b"", b"\x00\xff", b"abc"]
    columns["large_binary"] = pa.large_binary(), [b"\x01", b"xyz"]
    columns["fixed_binary"] = pa.binary(3), [b"abc", b"\x00\x01\x02"]
    columns["list_int"] = pa.list_(pa.int64()), [[], [1, 2], [None, 3]]
    columns["large_list_str"] = pa.large_list(pa.string()), [["a"], ["é", None]]
    struct = pa.struct([("b", pa.int32()), ("a", pa.string()), ("d", pa.decimal128(5, 2))])
    columns["struct"] = (
        struct,
        [
            {"b": 1, "a": "x", "d": Decimal("1.50")},
            {"b": None, "a": "é", "d": None},
        ],
    )
    columns["map"] = pa.map_(pa.string(), pa.int64()), [[("k", 1)], [("z", 2), ("a", None)]]
    columns["null"] = pa.null(), []
    return columns


def parquet_file(rng: random.Random, rows: int, **write_options) -> bytes:
    """A file of ``rows`` rows drawing from ``parquet_columns``, a fifth of values null."""
    arrays = {}
    for name, (kind, values) in parquet_columns().items():
        drawn = [rng.choice(values) if values and rng.random() > 0.2 else None for _ in range(rows)]
        if pa.types.is_dictionary(kind):
            arrays[name] = pa.array(drawn, pa.string()).dictionary_encode()
        else:
            arrays[name] = pa.array(drawn, kind)
    out = io.BytesIO()
    pq.write_table(pa.table(arrays), out, row_group_size=97, **write_options)
    return out.getvalue()


@pytest.fixture(scope="module")
def parquet_files() -> list[bytes]:
    rng = random.Random(18)
    return [
        parquet_file(rng, 400),
        parquet_file(rng, 150, store_decimal_as_integer=True),  # int32/int64 decimals
        parquet_file(rng, 60, use_dictionary=False, compression="none"),
        parquet_file(rng, 1),
    ]


def test_the_parquet_files_hold_every_type_the_format_documents(parquet_files):
    """The files carry what the differential tests below claim to cover."""
    metadata = pq.ParquetFile(io.BytesIO(parquet_files[1])).metadata
    schema = metadata.schema
    physical = {schema.column(i).path: schema.column(i).physical_type for i in range(len(schema))}
    assert physical["dec5_2"] == "INT32" and physical["dec18_4"] == "INT64"
    assert physical["dec30_10"] == "FIXED_LEN_BYTE_ARRAY"
    read = pq.read_table(io.BytesIO(parquet_files[0])).schema
    assert pa.types.is_dictionary(read.field("dict_string").type)
    assert read.field("ts_ns_berlin").type == pa.timestamp("ns", "Europe/Berlin")
    assert read.field("time32").type == pa.time32("ms")


@pytest.mark.parametrize("declared", DECLARED)
def test_parquet_of_every_type_lands_as_row_by_row_against(declared, parquet_files, monkeypatch):
    """Every column of every physical and logical type, declared as ``declared``: the
    same rows, text, lines and rejects as each row checked as Python values, across
    several record batches (batches far smaller than a row group, and not dividing it)."""
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 64)
    names = list(parquet_columns())
    declared_source = source("parquet", dict.fromkeys(names, declared))
    checked = 0
    for data in parquet_files:
        got, want = both(data, declared_source, monkeypatch)
        assert got == want
        checked += len(want[2]) + len(want[3])
    assert checked > 400


@pytest.mark.parametrize("zone", ["UTC", "America/St_Johns"])
def test_parquet_timestamps_in_another_zone_land_as_row_by_row(zone, parquet_files, monkeypatch):
    """Naive timestamps are wall time in the declared zone: in UTC every one fits (no
    clock skipped an hour), elsewhere each is looked at; aware ones keep their offset."""
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 64)
    names = [name for name in parquet_columns() if name.startswith(("ts_", "date", "string"))]
    declared_source = source("parquet", dict.fromkeys(names, "timestamp"), zone=zone)
    for data in parquet_files:
        got, want = both(data, declared_source, monkeypatch)
        assert got == want


def test_parquet_undeclared_columns_flow_as_text(parquet_files, monkeypatch):
    """Columns the source does not declare land as text as before, of the good rows."""
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 50)
    partial = source("parquet", {"int32": "int", "string": "long", "date32": "date"})
    got, want = both(parquet_files[0], partial, monkeypatch)
    assert got == want
    count, columns, good, rejects = want
    assert "struct" in columns and good and rejects  # extras land, some rows do not


BAD_UTF8 = pa.Array.from_buffers(
    pa.string(),
    2,
    [None, pa.py_buffer(np.array([0, 1, 3], np.int32).tobytes()), pa.py_buffer(b"ab\xff")],
)
BEYOND_PYTHON = {
    "date": pa.array([0, 3_000_000], pa.date32()),  # year 10183
    "string": BAD_UTF8,  # no UTF-8: Arrow's reader does not look
    # 9999-12-31T23:00Z, which at +05:30 is in year 10000
    "timestamp": pa.array([0, 253_402_297_200_000_000], pa.timestamp("us", "+05:30")),
}


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "undeclared"])
@pytest.mark.parametrize("kind", list(BEYOND_PYTHON))
def test_parquet_values_python_cannot_hold_fail_as_row_by_row(kind, declared, monkeypatch):
    """A date beyond Python's (year 10000 on) or text that is no UTF-8: Python's
    conversion refuses it, on either path, with the same error (the reader then
    quarantines the file whole or stops), in a declared column or an undeclared one."""
    out = io.BytesIO()
    pq.write_table(pa.table({"n": ["1", "2"], "v": BEYOND_PYTHON[kind]}), out)
    partner = source("parquet", {"n": "int", "v": kind} if declared else {"n": "int"})
    errors = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(parsers, "_parse_parquet", rows_parquet)
            with pytest.raises((OverflowError, ValueError)) as raised:
                landed(out.getvalue(), partner)
        errors.append((raised.type, str(raised.value)))
    assert errors[0] == errors[1]


def test_parquet_columns_of_one_name_land_as_row_by_row(monkeypatch):
    """A file with two columns of one name (Parquet allows it): the last one is the
    value, as in a row as Python values; the raw text names it once."""
    table = pa.Table.from_arrays(
        [pa.array([1, 2]), pa.array(["a", "b"]), pa.array(["3", "x"]), pa.array([5, 6])],
        names=["n", "note", "n", "note"],
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    got, want = both(out.getvalue(), source("parquet", {"n": "int"}), monkeypatch)
    assert got == want
    assert [(r["n"], r["note"]) for r in got[2]] == [("3", "5")]
    assert got[3][0]["_raw"] == '{"n": "x", "note": 6}'


def test_parquet_lines_count_across_batches(monkeypatch):
    """Reject lines are numbered in the file, not the batch; the last batch is short."""
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 3)
    table = pa.table({"n": pa.array(["1", "x", "3", "4", "5", "y", "7"])})
    out = io.BytesIO()
    pq.write_table(table, out)
    got, want = both(out.getvalue(), source("parquet", {"n": "int"}), monkeypatch)
    assert got == want
    assert [r["_row"] for r in got[3]] == [2, 6]
    assert [r["_row"] for r in got[2]] == [1, 3, 4, 5, 7]


# --- JSON lines: every shape JSON allows ----------------------------------------------

JSON_VALUES = [
    "null",
    "0",
    "-0",
    "7",
    "-12",
    "2147483647",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "123456789012345678901234567890",
    "1.5",
    "-0.0",
    "5.0",
    "1e5",
    "1E-7",
    "2.5e+3",
    "1e400",
    "NaN",
    "Infinity",
    "true",
    "false",
    '""',
    '"12"',
    '" 7 "',
    '"1.50"',
    '"1.505"',
    '"abc"',
    '"true"',
    '"0"',
    '"2026-02-28"',
    '"2026-02-30"',
    '"2026-01-02T03:04:05"',
    '"2026-01-02T03:04:05.123456+02:00"',
    '"2026-03-29T02:30:00"',
    '"é ü 中文"',
    '"\\u00e9\\ud83d\\ude00"',
    '"\\ud800"',
    '"a\\udc00b"',
    '{"b": 1, "a": [1, 2.5, null]}',
    '{"a": [1, 2.5, null], "b": 1}',
    "[]",
    '[1, "x", {"k": true}]',
    "{}",
]
KEYS = ["s", "i", "l", "d", "dec", "dec4", "dec10", "day", "at", "flag"]


def jsonl_text(rng: random.Random, lines: int) -> str:
    """Records whose fields draw from ``JSON_VALUES``, some keys missing, some extra
    (a "_" one too), with blank lines, lines that are no object or no JSON, CRLF."""
    out = []
    for _ in range(lines):
        roll = rng.random()
        if roll < 0.04:
            out.append(rng.choice(["", "   ", "\t"]))
            continue
        if roll < 0.07:
            out.append(rng.choice(["[1, 2]", "3", '"text"', "null", "{", '{"s": 1,}', "nul"]))
            continue
        fields = [(k, rng.choice(JSON_VALUES)) for k in KEYS if rng.random() > 0.1]
        if rng.random() < 0.3:
            fields.append((rng.choice(["extra", "more", "_lineage"]), rng.choice(JSON_VALUES[:35])))
        rng.shuffle(fields)
        out.append("{" + ", ".join(f'"{k}": {v}' for k, v in fields) + "}")
    end = rng.choice(["\n", "\r\n"])
    return end.join(out) + rng.choice(["", end])


def jsonl_source() -> LandingSource:
    return source("jsonl", dict(zip(KEYS, DECLARED, strict=True)))


def test_jsonl_of_every_shape_lands_as_row_by_row(monkeypatch):
    """Every JSON shape in every declared type: the same rows, text, lines and rejects
    as each record checked on its own, across chunks of records."""
    monkeypatch.setattr(parsers, "JSONL_CHUNK_RECORDS", 41)
    rng = random.Random(18)
    texts = [jsonl_text(rng, rng.randint(0, 300)) for _ in range(40)]
    partner = jsonl_source()
    rejects = 0
    for text in texts:
        got, want = both(text.encode(), partner, monkeypatch)
        assert got == want, text
        rejects += len(want[3])
    assert rejects > 1000


def test_jsonl_by_type_in_one_column(monkeypatch):
    """A field of one JSON type per file (the columns' Arrow fast paths: all text, all
    integers, all floats, all booleans), and of all of them mixed."""
    monkeypatch.setattr(parsers, "JSONL_CHUNK_RECORDS", 16)
    partner = jsonl_source()
    groups = {
        "ints": [v for v in JSON_VALUES if v.lstrip("-").isdigit()],
        "floats": ["1.5", "-0.0", "5.0", "1e5", "1E-7", "2.5e+3", "1e400", "NaN", "Infinity"],
        "bools": ["true", "false"],
        "strings": [v for v in JSON_VALUES if v.startswith('"')],
        "nested": [v for v in JSON_VALUES if v[0] in "[{"],
    }
    for values in [*groups.values(), [v for g in groups.values() for v in g]]:
        for key in KEYS:
            others = ", ".join(f'"{k}": null' for k in KEYS if k != key)
            lines = [f'{{"{key}": {v}, {others}}}' for v in values * 3]
            got, want = both("\n".join(lines).encode(), partner, monkeypatch)
            assert got == want, (key, values)


def test_jsonl_keys_only_rejected_records_carry_add_no_column(monkeypatch):
    """Undeclared keys come from the good records: a key only a quarantined record has
    is no bronze column (it would add one to the table), as row by row."""
    others = ", ".join(f'"{k}": null' for k in KEYS[1:])
    lines = [
        f'{{"s": "a", {others}, "kept": 1}}',
        f'{{"s": "b", {others}, "dropped": 2, "i": "x"}}',  # "i" is no int
        f'{{"s": "c", {others}, "kept": null}}',
    ]
    got, want = both("\r\n".join(lines).encode(), jsonl_source(), monkeypatch)
    assert got == want
    count, columns, good, rejects = got
    assert "kept" in columns and "dropped" not in columns
    assert [r["_row"] for r in good] == [1, 3] and [r["_row"] for r in rejects] == [2]


def test_jsonl_lone_surrogate_in_an_undeclared_key_quarantines_the_file_as_before(
    monkeypatch,
):
    """A lone surrogate where no declared column is (so no check names it) cannot be
    stored as text: the reader quarantines the file whole with the same reason on both
    paths (the row path found it when its rows became Arrow, this one at once)."""
    others = ", ".join(f'"{k}": null' for k in KEYS)
    data = f'{{{others}, "note": "ok"}}\n{{{others}, "note": "\\udc80"}}\n'.encode()
    partner = jsonl_source()
    found = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(parsers, "_parse_jsonl", rows_jsonl)
            got = reader.FileBody("k", "k@v", URI, parsers.spooled(data, URI, partner))
            sink = reader.BronzeRows(partner.layout.arrow_schema(), {}, lambda table: None)
            rejects = QuarantineBuffer(partner.name, "run", AT)
            count = reader._parse(got, partner, sink, rejects, None)
        found.append((count, [(r["_rule"], r["_reason"], r["_row"]) for r in rejects.rows]))
    assert found[0] == found[1]
    assert found[0] == (0, [("jsonl", found[0][1][0][1], None)])
    assert "surrogates not allowed" in found[0][1][0][1]


@pytest.mark.parametrize("declared", ["decimal(38,10)", "decimal(30,0)", "decimal(29,28)"])
def test_csv_decimals_past_the_decimal_context_are_checked_as_row_by_row(declared):
    """Decimals wider than decimal's default 28-digit context: the CSV column check's
    certain pattern and value_error agree, and the declared precision decides (a
    decimal(38,10) value of 28 integer digits lands; one of 29 does not)."""
    values = ["1", "-9223372036854775808", "1" * 18, "1" * 19, "0.5", "1" * 28, "1" * 29]
    values += ["1" * 30, "0." + "1" * 28]
    partner = source("csv", {"v": declared})
    rows, rejects = LandedRows(), QuarantineBuffer(partner.name, "run", AT)
    lines = pa.array(range(2, len(values) + 2), pa.int64())
    parsers._land_columns([pa.array(values, pa.large_string())], lines, URI, partner, rows, rejects)
    want_rows, want = LandedRows(), QuarantineBuffer(partner.name, "run", AT)
    for line, value in enumerate(values, start=2):
        parsers._check_row({"v": value}, line, value, URI, partner, want_rows, want)
    assert rejects.rows == want.rows
    assert rows.tables[0]["v"].to_pylist() == [r["v"] for r in want_rows.dicts]
    precision, scale = (int(n) for n in declared[8:-1].split(","))
    landed = set(rows.tables[0]["v"].to_pylist())
    assert ("1" * (precision - scale) in landed) and ("1" * (precision - scale + 1) not in landed)
    assert not any("is not a decimal" in r["_reason"] for r in want.rows)


def test_a_deliberately_broken_columnar_path_is_caught(parquet_files, monkeypatch):
    """The comparison can fail: Arrow's float text taken as Python's (Arrow writes 5.0
    as "5"), or problems joined in another order, make the paths differ."""
    monkeypatch.setattr(parsers, "PARQUET_BATCH_ROWS", 64)
    floats = source("parquet", {"float64": "double", "int8": "boolean", "string": "int"})
    got, want = both(parquet_files[0], floats, monkeypatch)
    assert got == want
    with monkeypatch.context() as patch:
        real_text = parsers._arrow_text

        def floats_too(column: pa.Array) -> pa.Array | None:
            if pa.types.is_floating(column.type):
                return column.cast(pa.large_string())
            return real_text(column)

        patch.setattr(parsers, "_arrow_text", floats_too)
        got, want = both(parquet_files[0], floats, monkeypatch)
        assert got != want
    with monkeypatch.context() as patch:
        real = parsers._reasons
        patch.setattr(parsers, "_reasons", lambda problems: real(problems[::-1]))
        got, want = both(parquet_files[0], floats, monkeypatch)
        assert got[3] != want[3]


def test_timezone_offsets_and_naive_parquet_timestamps_keep_their_text():
    """A spot check against hand-written expectations, so the reference is not the
    only judge: aware timestamps keep their offset, naive ones their wall time."""
    table = pa.table(
        {
            "at": pa.array([datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)], pa.timestamp("ms", "UTC")),
            "naive": pa.array([datetime(2026, 1, 2, 3, 4, 5, 120000)], pa.timestamp("us")),
            "off": pa.array(
                [datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))],
                pa.timestamp("s", "+02:00"),
            ),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    stamps = source("parquet", dict.fromkeys(["at", "naive", "off"], "timestamp"))
    count, _, good, rejects = landed(out.getvalue(), stamps)
    assert (count, rejects) == (1, [])
    assert good[0]["at"] == "2026-01-02T03:04:05+00:00"
    assert good[0]["naive"] == "2026-01-02T03:04:05.120000"
    assert good[0]["off"] == "2026-01-02T03:04:05+02:00"
