"""Landing files parsed into bronze rows and quarantine rejects: CSV, JSON lines, Parquet.

``parse_file`` is the one entry. Every value is checked against the source's
declared type and kept as text; a row that does not fit is rejected with its line
and every problem named, a file that cannot be read at all is rejected whole.
"""

from __future__ import annotations

import codecs
import csv
import functools
import io
import itertools
import json
import operator
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, tzinfo
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lakehouse.declarations.sources import LandingSource
from lakehouse.ingest.landing.body import Body, Facts, declared_compression
from lakehouse.ingest.landing.body import has_blank_line as _has_blank_line
from lakehouse.ingest.records import RecordRejected, decode_json
from lakehouse.ingest.values import DECIMAL, value_error
from lakehouse.tables import evolution

# Partner files can carry large free-text fields; the csv module's default is 128 KiB.
csv.field_size_limit(64 * 1024 * 1024)


def parse_file(
    body: Body | bytes, uri: str, source: LandingSource, rows, rejects, arrow: bool = True
) -> int:
    """Append good rows to ``rows`` and bad ones to ``rejects``; return data rows read.

    ``body``: the file as spooled from S3 (``Body``: decompressed, with its facts), or
    its bytes as stored (spooled here). ``rows`` takes row dicts (``append``) and Arrow
    tables (``add_table``), as the reader's ``LandedRows`` does, a chunk at a time: a
    caller that hands each chunk on holds a chunk, not the file. ``arrow=False``: not
    Arrow's streaming CSV reader (the caller saw it give up on this file mid-way:
    ArrowGaveUp).

    A file that cannot be read at all (empty, not UTF-8, wrong header, corrupt
    Parquet) becomes one quarantine record for the whole file and counts zero rows.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        body = spooled(bytes(body), uri, source)
    facts = body.facts
    if facts.compression_error:
        reason = (
            f"{facts.compression_error}; declare the file's compression "
            "(dialect.compression) in sources.yml"
        )
        rejects.add("compression", reason, None, _file=uri, _row=None)
        return 0
    if facts.space_only:
        rejects.add("empty_file", "file is empty", None, _file=uri, _row=None)
        return 0
    if source.format == "parquet":
        return _parse_parquet(body, uri, source, rows, rejects)
    encoding = source.dialect.encoding
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8 and source.format == "csv" and source.dialect.plain_csv and arrow:
        count = _parse_arrow_csv(body, uri, source, rows, rejects)
        if count is not None:
            return count
    if utf8 and source.format == "jsonl" and body.facts.utf8:
        return _parse_jsonl(_jsonl_lines(body, JSONL_CHUNK_BYTES), uri, source, rows, rejects)
    # the paths below decode the text a chunk at a time from the spool, once to check it
    # (a file that does not decode lands nothing) and once to read it
    text = _Text(body, "utf-8-sig" if utf8 else encoding, utf8, source.format == "csv")
    if text.error is not None:
        what = "UTF-8" if utf8 else encoding
        reason = (
            f"file is not valid {what}: {text.error}; declare the file's encoding "
            "(dialect.encoding, e.g. latin-1) in sources.yml"
        )
        rejects.add("utf8", reason, None, _file=uri, _row=None)
        return 0
    if source.format == "csv" and not source.dialect.plain_csv:
        return _parse_dialect_csv(text, uri, source, rows, rejects)
    if source.format == "csv":
        return _parse_csv(text, uri, source, rows, rejects)
    return _parse_jsonl(_lines(text.chunks()), uri, source, rows, rejects)


# Bytes of a file decoded at a time where the csv module or splitlines reads it.
TEXT_CHUNK_BYTES = 8 * 1024 * 1024


class _Text:
    """A spooled file's text, decoded ``TEXT_CHUNK_BYTES`` at a time (``utf8``: the
    declared encoding is UTF-8, read as ``utf-8-sig``), checked once through when made.

    ``error``: why it does not decode, worded exactly as decoding the whole bytes
    words it. ``head``: its first ``HEAD_CHARS`` characters (a rejected header's raw
    text). ``plain``: for a CSV, whether ``_plain`` holds for the whole text (each
    chunk plain, and the whole short enough: in bytes for UTF-8, as ``_plain`` of the
    bytes counts, in characters otherwise); a plain file is read whole (``whole``),
    which ``csv.field_size_limit`` bounds.
    """

    HEAD_CHARS = 4096

    def __init__(self, body: Body, encoding: str, utf8: bool, csv_file: bool) -> None:
        self.body, self.encoding, self.utf8 = body, encoding, utf8
        self.error: str | None = None
        self.head = ""
        self.plain = False
        chars, plain = 0, csv_file
        try:
            for text in self.chunks():
                if len(self.head) < self.HEAD_CHARS:
                    self.head = (self.head + text)[: self.HEAD_CHARS]
                chars += len(text)
                plain = plain and _plain(text)
        except _Undecodable as exc:
            self.error = str(exc)
            return
        size = body.size if utf8 else chars
        self.plain = plain and size < csv.field_size_limit()

    def chunks(self) -> Iterator[str]:
        return _decoded(self.body, self.encoding, TEXT_CHUNK_BYTES)

    def lines(self) -> Iterator[str]:
        """The text's lines as ``io.StringIO(text, newline="")`` gives them to the csv
        module (ends kept), a chunk decoded at a time."""
        return _lines(self.chunks(), csv_lines=True)

    def whole(self) -> tuple[str, bytes | None]:
        """The text read whole, and for UTF-8 its bytes (a plain file: Arrow reads them)."""
        data = self.body.read()
        return data.decode(self.encoding), (data if self.utf8 else None)


class _Undecodable(Exception):
    """The text does not decode; the message is a whole decode's."""


def _decoded(body: Body, encoding: str, chunk: int) -> Iterator[str]:
    """The spooled file's text, decoded ``chunk`` bytes at a time (``_Undecodable``
    where it does not decode), exactly as ``bytes.decode(encoding)`` decodes it whole."""
    decoder, skip, offset = _decoder(body, encoding)
    stream = body.stream(skip)
    while True:
        data = stream.read(chunk)
        pending = len(decoder.getstate()[0])  # bytes of a character the last chunk began
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise _Undecodable(_worded(exc, offset - pending + exc.start)) from exc
        if text:
            yield text
        if not data:
            return
        offset += len(data)


def _decoder(body: Body, encoding: str) -> tuple[codecs.IncrementalDecoder, int, int]:
    """An incremental decoder that decodes as a whole decode does, the bytes it starts
    after (a BOM) and the position errors count from there.

    Codecs that read a byte order mark decode whole and in increments differently
    (incremental UTF-16 refuses a file without a BOM, which a whole decode reads in the
    machine's order; the utf-8-sig codec counts error positions after its BOM, the
    UTF-16 and UTF-32 codecs from the file's start): their BOM is read here.
    """
    name = codecs.lookup(encoding).name
    if name not in _BOMS:
        return codecs.getincrementaldecoder(encoding)(), 0, 0
    boms, otherwise, counted = _BOMS[name]
    body.file.seek(0)
    start = body.file.read(4)
    for bom, codec in boms:
        if start.startswith(bom):
            return codecs.getincrementaldecoder(codec)(), len(bom), len(bom) * counted
    return codecs.getincrementaldecoder(otherwise)(), 0, 0


_ORDER = "le" if sys.byteorder == "little" else "be"
# codec: ((its BOM, the codec of what follows), ...), the codec without a BOM, and
# whether error positions count the BOM
_BOMS = {
    "utf-8-sig": (((codecs.BOM_UTF8, "utf-8"),), "utf-8", False),
    "utf-16": (
        ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")),
        f"utf-16-{_ORDER}",
        True,
    ),
    "utf-32": (
        ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be")),
        f"utf-32-{_ORDER}",
        True,
    ),
}


def _worded(exc: UnicodeDecodeError, start: int) -> str:
    """``exc`` worded as decoding the whole file words it, at ``start`` (CPython's
    ``UnicodeDecodeError.__str__``)."""
    if exc.end == exc.start + 1:
        byte = exc.object[exc.start]
        where = f"byte 0x{byte:02x} in position {start}"
    else:
        where = f"bytes in position {start}-{start + exc.end - exc.start - 1}"
    return f"'{exc.encoding}' codec can't decode {where}: {exc.reason}"


def _lines(chunks: Iterable[str], csv_lines: bool = False) -> Iterator[str]:
    """The lines of the text ``chunks`` hold, exactly as the whole text splits them:
    ``str.splitlines``, or with ``csv_lines`` as ``io.StringIO(text, newline="")``
    iterates them (LF, CRLF and a lone CR end a line, and are kept). A chunk's last
    line waits for the next chunk while it has no end, or ends in a CR (an LF may
    follow): memory follows a chunk and the longest line."""
    ends = "\n\r" if csv_lines else _BREAKS
    carry = ""
    for chunk in chunks:
        lines = _split(carry + chunk, csv_lines)
        last = lines[-1][-1] if lines else "\n"
        carry = lines.pop() if last not in ends or last == "\r" else ""
        yield from lines if csv_lines else (line.splitlines()[0] for line in lines)
    lines = _split(carry, csv_lines)
    yield from lines if csv_lines else (line.splitlines()[0] for line in lines)


def _split(text: str, csv_lines: bool) -> list[str]:
    """``text``'s lines, ends kept (``io.StringIO`` would hold the text 4 bytes a
    character: ``_CSV_LINE`` gives its lines without a copy of it)."""
    return _CSV_LINE.findall(text) if csv_lines else text.splitlines(keepends=True)


# A line as ``io.StringIO(text, newline="")`` ends it: at LF, CRLF or a CR alone.
_CSV_LINE = re.compile(r"[^\r\n]*(?:\r\n?|\n)|[^\r\n]+")


# What str.splitlines breaks a line at (a CR before an LF: one break with it).
_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def spooled(data: bytes, uri: str, source: LandingSource) -> Body:
    """``data`` (a file's bytes as stored) spooled as ``fetch_file`` spools an object."""
    compression = "none"
    if source.format != "parquet":
        compression = declared_compression(uri, source.dialect.compression)
    return Body.of_bytes(data, compression, text=source.format != "parquet")


def _parse_dialect_csv(text: _Text, uri: str, source: LandingSource, rows, rejects) -> int:
    """A CSV in the source's declared dialect, read by the csv module row by row, its
    lines decoded a chunk at a time."""
    dialect = source.dialect
    reader = csv.reader(
        text.lines(),
        delimiter=dialect.delimiter,
        quotechar=dialect.quote or '"',
        quoting=csv.QUOTE_MINIMAL if dialect.quote else csv.QUOTE_NONE,
        escapechar=dialect.escape,
        doublequote=dialect.escape is None,
    )
    expected = list(source.columns)
    names, first = expected, 1
    if dialect.header:
        header = [h.strip() for h in next(reader, [])]
        first = 2
        if header != expected and not _declared_in(header, source, uri):
            rejects.add("header", _header_reason(header, expected), text.head, _file=uri, _row=1)
            return 0
        names = header
    nulls = set(dialect.null_values)
    count = 0
    for line, values in enumerate(reader, start=first):
        if not values:
            continue
        count += 1
        raw = dialect.delimiter.join(values)
        if len(values) != len(names):
            reason = f"expected {len(names)} fields, found {len(values)}"
            rejects.add("column_count", reason, raw, _file=uri, _row=line)
            continue
        record = {n: (None if v in nulls else v) for n, v in zip(names, values, strict=True)}
        _check_row(record, line, raw, uri, source, rows, rejects)
    return count


def _header_reason(header: list[str], expected: list[str]) -> str:
    return (
        f"header {header} does not match the declared columns {expected}; a file in "
        "another dialect? declare its delimiter, quote or header (dialect.*) in sources.yml"
    )


def _check_row(values: dict[str, Any], line: int, raw: str, uri, source, rows, rejects) -> None:
    zone = source.dialect.zone
    problems = [
        f"{column}: {error}"
        for column, declared in source.columns.items()
        if (
            error := value_error(declared, values.get(column), zone)
            or _unencodable(values.get(column))
        )
    ]
    if problems:
        rejects.add("schema", "; ".join(problems), raw, _file=uri, _row=line)
        return
    row = {c: _text(values.get(c)) for c in source.columns}
    # undeclared columns flow as text; names starting "_" are lineage's
    extra = {c: _text(v) for c, v in values.items() if c not in row and not c.startswith("_")}
    rows.append({**row, **extra, "_file": uri, "_row": line})


def _parse_csv(text: _Text, uri: str, source: LandingSource, rows, rejects) -> int:
    """A CSV in the default dialect the csv module reads, its lines decoded a chunk at a
    time; a plain one (``_plain``, no longer than ``csv.field_size_limit``) is read
    whole and handed to Arrow (as its bytes, for UTF-8: no encode of the text)."""
    whole, data = text.whole() if text.plain else ("", None)
    reader = None if text.plain else csv.reader(text.lines())
    if reader is None:  # the first line split at commas, as the csv module reads it
        first = whole.partition("\n")[0]
        header = [h.strip() for h in first.split(",")] if first else []
    else:
        header = [h.strip() for h in next(reader)]
    expected = list(source.columns)
    if header != expected and _declared_in(header, source, uri):
        if reader is None:
            reader = csv.reader(io.StringIO(whole, newline=""))
            next(reader)
        return _parse_csv_by_name(reader, header, uri, source, rows, rejects)
    if header != expected:
        rejects.add("header", _header_reason(header, expected), text.head, _file=uri, _row=1)
        return 0
    if reader is None:
        return _parse_plain_csv(whole, uri, source, rows, rejects, data)
    count = 0
    lines: list[int] = []
    records: list[list[str]] = []
    for line, values in enumerate(reader, start=2):
        if not values:
            continue
        count += 1
        if len(values) != len(expected):
            rejects.add(
                "column_count",
                f"expected {len(expected)} fields, found {len(values)}",
                ",".join(values),
                _file=uri,
                _row=line,
            )
            continue
        lines.append(line)
        records.append(values)
    if records:
        columns = [pa.array(c, pa.string()) for c in zip(*records, strict=True)]
        line_numbers = pa.array(lines, pa.int64())
        _land_columns(columns, line_numbers, uri, source, rows, rejects)
    return count


def _declared_in(names: list[str], source: LandingSource, uri: str) -> bool:
    """Whether a file's columns hold every declared one (then read by name, extras too).

    A file sharing no column with the declaration is not this source's: quarantined
    whole. One that shares some but lacks a declared column is a dropped column: the
    source stops, naming it (evolution.SchemaBreak), with nothing committed.
    """
    missing = [c for c in source.columns if c not in names]
    if missing and set(names) & set(source.columns):
        raise evolution.SchemaBreak(
            f"source {source.name!r}: declared column(s) {missing} missing from {uri} (it has "
            f"{names}): dropped or renamed? Nothing was ingested; remove them from sources.yml "
            "if the drop is intended, or replace the file, then run again."
        )
    return not missing


def _parse_csv_by_name(reader, header, uri, source, rows, rejects) -> int:
    """Rows of a file whose header reorders the declared columns or adds new ones."""
    count = 0
    for line, values in enumerate(reader, start=2):
        if not values:
            continue
        count += 1
        if len(values) != len(header):
            reason = f"expected {len(header)} fields, found {len(values)}"
            rejects.add("column_count", reason, ",".join(values), _file=uri, _row=line)
            continue
        record = dict(zip(header, values, strict=True))
        _check_row(record, line, ",".join(values), uri, source, rows, rejects)
    return count


def _plain(text: str | bytes) -> bool:
    """A CSV without quotes, carriage returns or NULs: one record per line, fields split
    at every comma, exactly as the csv module reads it (which Arrow can do at C speed).
    Its UTF-8 bytes answer the same (none of these bytes occurs inside a multi-byte
    character, and bytes are never fewer than characters), faster."""
    quote, cr, nul = ('"', "\r", "\x00") if isinstance(text, str) else (b'"', b"\r", b"\x00")
    return (
        quote not in text
        and cr not in text
        and nul not in text
        and len(text) < csv.field_size_limit()
    )


class ArrowGaveUp(Exception):
    """Arrow's CSV reader failed part-way through a file, after some of its rows were
    handed on: the file must be read again by the csv module (``arrow=False``)."""


# Bytes of CSV Arrow parses into one record batch: what a chunk of a file holds in memory.
CSV_BLOCK_BYTES = 8 * 1024 * 1024
# Blocks Arrow's reader may read from the spooled file beyond the batches it produced.
CSV_BLOCKS_AHEAD = 3


def _arrow_csv_applies(facts: Facts, columns: int) -> bool:
    """Whether Arrow's CSV reader reads the file (UTF-8, in the default dialect) exactly
    as the csv module does, record for record, so line numbers agree too.

    Both split quoted and unquoted fields alike (a doubled quote inside quotes, text
    after a closing quote joins the field, a quote inside an unquoted field is text).
    They differ where the csv module sees a blank line (it skips it but counts it,
    Arrow reads a row of empty fields), a NUL (the csv module refuses the file) or a
    lone carriage return; such files, and one-column sources (a blank line is a value
    there), take the csv module. A record longer than a block, or an Arrow error, is
    found while reading: ArrowGaveUp. The facts were gathered as the file was spooled.
    """
    if columns < 2 or facts.nul:
        return False
    if facts.cr != facts.crlf:
        return False
    return not (facts.blank_line or facts.lf_cr)


def _parse_arrow_csv(body: Body, uri: str, source: LandingSource, rows, rejects) -> int | None:
    """A UTF-8 CSV in the default dialect whose header is the declared columns, read by
    Arrow's streaming reader a block at a time from the spooled file: each block is
    checked and handed on as it is read, so memory follows a block, not the file. None,
    with nothing handed on, where the csv module must read it (``_arrow_csv_applies``,
    not UTF-8, another header: its reasons are the csv module path's)."""
    facts = body.facts
    expected = list(source.columns)
    if not facts.text or facts.first_line is None:
        return None
    first, cut = facts.first_line, facts.first_lf
    start = facts.size if cut < 0 else cut + 1  # where line 2 starts
    try:
        header = [h.strip() for h in next(csv.reader([first.decode("utf-8-sig")]), [])]
    except (UnicodeDecodeError, csv.Error):
        return None
    if header != expected or first.count(b'"') % 2 or not _arrow_csv_applies(facts, len(expected)):
        return None
    if not facts.utf8:
        return None  # the csv module path names the position
    if start == facts.size:
        return 0
    invalid: deque[pacsv.InvalidRow] = deque()

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    paced = body.paced(start, CSV_BLOCKS_AHEAD)
    reader = pacsv.open_csv(
        paced.stream(),
        # single-threaded: invalid rows are numbered, and reported with their block
        read_options=pacsv.ReadOptions(
            column_names=expected, use_threads=False, block_size=CSV_BLOCK_BYTES
        ),
        parse_options=pacsv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=skip
        ),
        # large_string: bronze's string type, so the text is never copied by a cast
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(expected, pa.large_string())
        ),
    )
    # Invalid rows are reported as Arrow parses, which may run a block ahead of the
    # batches: lines are record numbers (header = 1), the good ones those not reported.
    cursor, handed_on, mark = 2, False, len(rejects.rows)  # handed_on: a good row left
    # Arrow (pyarrow 26) can drop the LF of a CRLF inside a quoted value that straddles
    # two blocks: in a file with quotes and CRs every LF is accounted for (in a value,
    # in an invalid row or ending a record), and a file where one went missing is read
    # again by the csv module. (LF-only files read right at every block size tested.)
    quoted = facts.quote_after_first_line and facts.cr > first.count(b"\r")
    newlines = 0

    def reject_before(end: float) -> None:
        while invalid and invalid[0].number + 1 < end:
            row = invalid.popleft()
            nonlocal newlines
            newlines += row.text.count("\n")
            # the csv module's fields, joined: the raw text the other paths keep
            values = next(csv.reader(io.StringIO(row.text, newline="")), [])
            reason = f"expected {len(expected)} fields, found {len(values)}"
            rejects.add("column_count", reason, ",".join(values), _file=uri, _row=row.number + 1)

    try:
        for batch in _parsed_ahead(reader, paced.took):
            reported = list(invalid)  # a snapshot: the parsing thread appends as it goes
            if reported and reported[0].number + 1 < cursor:
                raise pa.ArrowInvalid(f"row {reported[0].number} reported after later rows")
            if not batch.num_rows:
                continue
            candidates = np.arange(cursor, cursor + batch.num_rows + len(reported))
            bad = np.array([row.number + 1 for row in reported], dtype=np.int64)
            lines = candidates[~np.isin(candidates, bad)][: batch.num_rows]
            if len(lines) < batch.num_rows:
                raise pa.ArrowInvalid("rows and invalid rows do not add up")
            reject_before(lines[-1])
            cursor = int(lines[-1]) + 1
            if quoted:
                newlines += sum(pc.sum(pc.count_substring(c, "\n")).as_py() for c in batch)
            _land_columns(list(batch.columns), pa.array(lines), uri, source, rows, rejects)
            handed_on = True
        count = cursor - 2 + len(invalid)  # rows after the last good one are all invalid
        reject_before(float("inf"))
        if quoted and newlines + count - (not facts.ends_lf) != facts.lf - 1:
            raise pa.ArrowInvalid("a line break inside a quoted value was lost")
    except (pa.ArrowInvalid, csv.Error) as exc:
        if handed_on:
            raise ArrowGaveUp(f"{uri}: {exc}") from exc
        del rejects.rows[mark:]  # the csv module path finds them again
        return None
    finally:
        paced.close()
    return count


def _parsed_ahead(
    reader: pacsv.CSVStreamingReader, took: Callable[[], None]
) -> Iterator[pa.RecordBatch]:
    """The reader's batches, the next one parsed by a thread while the caller checks
    this one (Arrow parses without the GIL): one block ahead, no more. ``took`` is told
    of each batch parsed (it paces the reader's reads)."""

    def parse_next() -> pa.RecordBatch | None:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return None
        took()
        return batch

    with ThreadPoolExecutor(1, thread_name_prefix="csv-blocks") as pool:
        ahead = pool.submit(parse_next)
        while (batch := ahead.result()) is not None:
            ahead = pool.submit(parse_next)
            yield batch


def _parse_plain_csv(
    text: str, uri: str, source: LandingSource, rows, rejects, data: bytes | None = None
) -> int:
    """A plain CSV read by Arrow's CSV reader; the reader skips blank lines without
    saying where they were, so a file with any takes ``_parse_split_csv``."""
    if data is None:
        data = text.encode("utf-8")
    if _has_blank_line(data):
        return _parse_split_csv(text, uri, source, rows, rejects)
    expected = list(source.columns)
    # the header is checked already: line 2 on, as the bytes read (a BOM is on line 1)
    data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    if not data:
        return 0
    invalid: list[pacsv.InvalidRow] = []

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    table = pacsv.read_csv(
        io.BytesIO(data),
        # single-threaded: the reader numbers invalid rows only then; one block, so no
        # line is too long for a block (the csv module path has no such limit)
        read_options=pacsv.ReadOptions(
            column_names=expected, use_threads=False, block_size=len(data) + 1
        ),
        parse_options=pacsv.ParseOptions(quote_char=False, invalid_row_handler=skip),
        # large_string: bronze's string type, so the text is never copied by a cast
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(expected, pa.large_string())
        ),
    )
    for row in invalid:
        rejects.add(
            "column_count",
            f"expected {len(expected)} fields, found {row.actual_columns}",
            row.text,
            _file=uri,
            _row=row.number + 1,
        )
    count = table.num_rows + len(invalid)
    if table.num_rows:
        good = np.ones(count, dtype=bool)
        good[np.array([row.number for row in invalid], dtype=np.int64) - 1] = False
        line_numbers = pa.array(np.arange(2, count + 2, dtype=np.int64)[good])
        columns = [column.combine_chunks() for column in table.columns]
        _land_columns(columns, line_numbers, uri, source, rows, rejects)
    return count


def _parse_split_csv(text: str, uri: str, source: LandingSource, rows, rejects) -> int:
    expected = list(source.columns)
    body = pa.array(text.split("\n")[1:], pa.string())
    nonblank = pc.not_equal(body, "")
    commas = pc.count_substring(body, ",")
    whole = pc.and_(nonblank, pc.equal(commas, len(expected) - 1))
    for index in pc.indices_nonzero(pc.and_(nonblank, pc.invert(whole))).to_pylist():
        line = body[index].as_py()
        rejects.add(
            "column_count",
            f"expected {len(expected)} fields, found {line.count(',') + 1}",
            line,
            _file=uri,
            _row=index + 2,
        )
    fields = pc.split_pattern(body.filter(whole), ",")
    if len(fields):
        columns = [pc.list_element(fields, i) for i in range(len(expected))]
        line_numbers = pc.add(pc.indices_nonzero(whole), 2).cast(pa.int64())
        _land_columns(columns, line_numbers, uri, source, rows, rejects)
    return pc.sum(nonblank).as_py() or 0


def _land_columns(columns, line_numbers, uri, source, rows, rejects) -> None:
    """Check text columns against the declared types; good rows to ``rows`` as Arrow.

    Each column is checked in Arrow (a pattern that certainly fits), and only the
    rest, one distinct value at a time, by value_error: no Python runs per good row.
    Rows with a bad value are quarantined with every problem named, in declared
    column order, exactly as ``_check_row`` names them.
    """
    expected = list(source.columns)
    problems = []  # (column name, its position, {bad value: error}, bad mask)
    for n, (name, declared) in enumerate(source.columns.items()):
        if errors := _value_errors(declared, columns[n], source.dialect.zone):
            bad = pc.is_in(columns[n], value_set=pa.array(list(errors), columns[n].type))
            problems.append((name, n, errors, bad))
    good = pa.table(dict(zip(expected, columns, strict=True)))
    if problems:
        bad = functools.reduce(pc.or_, (mask for *_, mask in problems))
        _reject_rows(pc.indices_nonzero(bad), columns, line_numbers, problems, uri, rejects)
        keep = pc.invert(bad)
        good, line_numbers = good.filter(keep), line_numbers.filter(keep)
    n = good.num_rows
    good = good.append_column("_file", pa.repeat(pa.scalar(uri, pa.large_string()), n))
    good = good.append_column("_row", line_numbers)
    rows.add_table(good)


def _reject_rows(indices, columns, line_numbers, problems, uri, rejects) -> None:
    """Quarantine the rows at ``indices`` (few): raw text is the fields joined by commas."""
    values = [column.take(indices).to_pylist() for column in columns]
    lines = line_numbers.take(indices).to_pylist()
    for i, line in enumerate(lines):
        reason = "; ".join(
            f"{name}: {errors[values[n][i]]}"
            for name, n, errors, _ in problems
            if values[n][i] in errors
        )
        raw = ",".join(column[i] for column in values)
        rejects.add("schema", reason, raw, _file=uri, _row=line)


def _value_errors(declared: str, column: pa.Array, zone: tzinfo) -> dict[str, str]:
    """The distinct values of ``column`` that do not fit ``declared``, with
    ``value_error``'s reason; values a certain pattern matches are not looked at."""
    declared = declared.strip()
    if declared == "string":
        return {}
    pattern = _certain_pattern(declared)
    if pattern is not None:  # one pass; empty fits too
        column = column.filter(pc.invert(pc.match_substring_regex(column, f"^(?:{pattern})?$")))
    unsure = pc.unique(column).to_pylist()
    return {v: error for v in unsure if (error := value_error(declared, v, zone))}


def _certain_pattern(declared: str) -> str | None:
    """A regex whose every whole match ``value_error`` accepts (a subset; None: check all)."""
    if declared == "int":
        return r"-?[0-9]{1,9}"
    if declared == "long":
        return r"-?[0-9]{1,18}"
    if declared == "double":
        return r"-?[0-9]{1,15}(\.[0-9]{1,15})?"
    if declared == "date":  # days 29-31 and years before 1000 are looked at one by one
        return r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    if match := DECIMAL.match(declared):
        precision, scale = int(match[1]), int(match[2])
        whole = precision - scale
        if whole < 1:
            return None
        fraction = rf"(\.[0-9]{{1,{scale}}})?" if scale else ""
        return rf"-?[0-9]{{1,{whole}}}{fraction}"
    return None  # timestamps, booleans: checked one distinct value at a time


def _jsonl_lines(body: Body, chunk: int) -> Iterator[str]:
    """A UTF-8 file's lines as ``str.splitlines`` splits the whole text (a BOM dropped),
    decoded ``chunk`` bytes at a time (``_lines``): memory follows a chunk and the
    longest line, whatever breaks the lines (LF, CR alone, U+2028, ...)."""
    return _lines(_decoded(body, "utf-8-sig", chunk))


# Bytes of a JSON-lines file decoded at a time.
JSONL_CHUNK_BYTES = 8 * 1024 * 1024


def _parse_jsonl(lines: Iterable[str], uri: str, source: LandingSource, rows, rejects) -> int:
    """Each line decoded on its own (``decode_json`` holds the JSON rules), then checked
    a chunk of records at a time column by column (``_land_records``): at most
    ``JSONL_CHUNK_RECORDS``, and lines of at most a quarter of ``JSONL_CHUNK_BYTES`` (a
    decoded record takes several times its text), so memory follows a chunk."""
    count = held = 0
    keys: set[str] = set()
    chunk: list[tuple[int, str, dict[str, Any]]] = []  # (line, raw, record)
    refused: list[tuple[int, str, str, str]] = []  # (line, rule, reason, raw)
    for line, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            record = decode_json(raw)
        except RecordRejected as rejected:
            refused.append((line, rejected.rule, rejected.reason, raw[:4096]))
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            refused.append((line, "json_object", f"a JSON {kind}, not an object", raw))
            continue
        keys.update(record)
        chunk.append((line, raw, record))
        held += len(raw)
        if len(chunk) >= JSONL_CHUNK_RECORDS or held >= JSONL_CHUNK_BYTES // 4:
            _land_records(chunk, refused, uri, source, rows, rejects)
            chunk, refused, held = [], [], 0
    _land_records(chunk, refused, uri, source, rows, rejects)
    if keys:
        _declared_in(sorted(keys), source, uri)  # a declared key no record carries: dropped
    return count


# Decoded JSON records checked (and handed on) at a time.
JSONL_CHUNK_RECORDS = 32_768


def _land_records(
    chunk: list[tuple[int, str, dict[str, Any]]],
    refused: list[tuple[int, str, str, str]],
    uri: str,
    source: LandingSource,
    rows,
    rejects,
) -> None:
    """Check decoded records column by column, as ``_check_row`` checks each: good rows
    to ``rows`` as one Arrow table, bad ones (and ``refused``, lines that were no JSON
    object) to ``rejects`` in line order, every problem named as ``_check_row`` names it.
    Undeclared keys of the good records flow as text (names starting "_" are lineage's)."""
    if not chunk:
        _reject_refused(refused, uri, rejects)
        return
    lines, raws, records = zip(*chunk, strict=True)
    texts, problems = {}, []
    fields = _fields(records, list(source.columns))
    for (name, declared), values in zip(source.columns.items(), fields, strict=True):
        text, errors = _checked_values(values, declared, source.dialect.zone)
        texts[name] = text
        if errors:
            problems.append((name, errors))
    reasons = _reasons(problems)
    for i, reason in reasons.items():
        refused.append((lines[i], "schema", reason, raws[i][:4096]))
    _reject_refused(refused, uri, rejects)
    keep = _keep(len(chunk), reasons)
    good = [r for r, k in zip(records, keep, strict=True) if k] if reasons else records
    if not good:
        return
    mask = pa.array(keep)
    table = {name: text.filter(mask) if reasons else text for name, text in texts.items()}
    for name in dict.fromkeys(itertools.chain.from_iterable(good)):  # first seen first
        if name not in table and not name.startswith("_"):
            table[name] = _text_array([_text(r.get(name)) for r in good])
    _add_rows(table, np.asarray(lines, dtype=np.int64)[keep], uri, rows)


def _reject_refused(refused: list[tuple[int, str, str, str]], uri: str, rejects) -> None:
    """(line, rule, reason, raw) to ``rejects`` in line order, as a row-by-row read
    adds them."""
    for line, rule, reason, raw in sorted(refused, key=lambda r: r[0]):
        rejects.add(rule, reason, raw, _file=uri, _row=line)


def _fields(records: Sequence[dict[str, Any]], names: list[str]) -> list[Sequence[Any]]:
    """Each name's values in ``records`` (None where a record lacks it): one C-level
    pass where every record has every name, as most files' records do."""
    if len(names) == 1:
        return [[r.get(names[0]) for r in records]]
    try:
        return list(zip(*map(operator.itemgetter(*names), records), strict=True))
    except KeyError:
        return [[r.get(name) for r in records] for name in names]


def _parse_parquet(body: Body, uri: str, source: LandingSource, rows, rejects) -> int:
    """Rows checked a record batch at a time read from the spooled file (memory follows
    a row group and a batch), column by column (``_land_batch``): whatever physical type
    a column has, a value lands if it fits without loss."""
    try:
        # pre_buffer (pyarrow's default) keeps every column chunk it read for the life of
        # the reader: the whole file in memory by the last row group. Reads are local.
        parquet = pq.ParquetFile(body.random_access(), pre_buffer=False)
        names = parquet.schema_arrow.names
    except (pa.ArrowInvalid, OSError) as exc:
        rejects.add("parquet", f"unreadable Parquet file: {exc}", None, _file=uri, _row=None)
        return 0
    if not _declared_in(names, source, uri):
        missing = [c for c in source.columns if c not in names]
        reason = f"missing declared columns {missing}; file has {names}"
        rejects.add("header", reason, None, _file=uri, _row=None)
        return 0
    first = 1  # line of the batch's first row
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            _land_batch(batch, first, uri, source, rows, rejects)
            first += batch.num_rows
    except OSError as exc:  # a corrupt page: the file is quarantined whole
        raise ValueError(f"unreadable Parquet file: {exc}") from exc
    return parquet.metadata.num_rows


# Rows of a Parquet file checked (and handed on) at a time.
PARQUET_BATCH_ROWS = 32_768


def _land_batch(
    batch: pa.RecordBatch, first: int, uri: str, source: LandingSource, rows, rejects
) -> None:
    """One record batch checked column by column, as ``_check_row`` checks each of its
    rows as Python values: the same text, the same rejects (raw: the row as JSON)."""
    texts, problems = {}, []
    columns = _by_name(batch)
    for name, declared in source.columns.items():
        text, errors = _checked_arrow(columns[name], declared, source.dialect.zone)
        texts[name] = text
        if errors:
            problems.append((name, errors))
    reasons = _reasons(problems)
    if reasons:
        bad = pa.array(list(reasons), pa.int64())
        for i, record in zip(reasons, batch.take(bad).to_pylist(), strict=True):
            raw = json.dumps(record, default=str)
            rejects.add("schema", reasons[i], raw, _file=uri, _row=first + i)
    keep = _keep(batch.num_rows, reasons)
    if reasons:
        mask = pa.array(keep)
        batch = batch.filter(mask)
        texts = {name: text.filter(mask) for name, text in texts.items()}
    if not batch.num_rows:
        return
    for name, column in _by_name(batch).items():
        if name not in texts and not name.startswith("_"):
            texts[name] = _checked_arrow(column, "string", source.dialect.zone)[0]
    lines = np.arange(first, first + len(keep), dtype=np.int64)[keep]
    _add_rows(texts, lines, uri, rows)


def _by_name(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """The batch's columns by name; of two of one name the last, as a row as Python
    values holds it."""
    return dict(zip(batch.schema.names, batch.columns, strict=True))


def _reasons(problems: list[tuple[str, dict[int, str]]]) -> dict[int, str]:
    """Row index -> its problems, in declared column order, joined as ``_check_row``
    joins them; rows in index order. ``problems``: (column, {row index: error})."""
    by_row: dict[int, list[str]] = {}
    for name, errors in problems:
        for i, error in errors.items():
            by_row.setdefault(i, []).append(f"{name}: {error}")
    return {i: "; ".join(by_row[i]) for i in sorted(by_row)}


def _keep(n: int, reasons: dict[int, str]) -> np.ndarray:
    keep = np.ones(n, dtype=bool)
    keep[list(reasons)] = False
    return keep


def _add_rows(texts: dict[str, pa.Array], lines: np.ndarray, uri: str, rows) -> None:
    """Good rows (text columns, line numbers) to ``rows`` with their lineage columns."""
    table = pa.table(texts)
    table = table.append_column("_file", pa.repeat(pa.scalar(uri, pa.large_string()), len(lines)))
    rows.add_table(table.append_column("_row", pa.array(lines, pa.int64())))


def _checked_arrow(
    column: pa.Array, declared: str, zone: tzinfo
) -> tuple[pa.Array, dict[int, str]]:
    """An Arrow column's text (``_text`` of each value) and the rows whose value does not
    fit ``declared`` ({row index: value_error's reason on the Python value}). Arrow's
    own text where it is ``_text``'s (strings, integers, booleans, decimals, dates,
    timestamps in UTC or at a fixed offset), else each value's as Python sees it. No
    Python runs per good value on the first."""
    text = _arrow_text(column)
    if text is not None:
        if declared.strip() == "timestamp" and _fits_any_timestamp(column.type, zone):
            return text, {}
        return text, _column_errors(declared, text, lambda at: column.take(at).to_pylist(), zone)
    values = column.to_pylist()
    text = _text_array([_text(v) for v in values])
    return text, _column_errors(declared, text, lambda at: [values[i] for i in at], zone)


def _arrow_text(column: pa.Array) -> pa.Array | None:
    """``column`` cast to text where Arrow's text of every value is ``_text`` of its
    Python value (checked by tests/test_landing_columnar.py), else None. Floats (Arrow
    writes 1.0 as "1"), timestamps, times, binary and nested values are not."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.dictionary_decode(), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        try:
            column.validate(full=True)  # bad UTF-8: as_py raises, and so must this path
        except pa.ArrowInvalid:
            return None
    elif pa.types.is_timestamp(kind):
        return _timestamp_text(column)
    elif pa.types.is_date32(kind):
        days = pc.min_max(column.cast(pa.int32()))
        low, high = days["min"].as_py(), days["max"].as_py()
        if low is not None and (low < _DAY_ONE or high > _DAY_LAST):
            return None  # beyond Python's dates: as_py raises, and so must this path
    elif not (pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_decimal(kind)):
        return None
    return column.cast(pa.large_string())


# date32 days of Python's first and last dates (0001-01-01, 9999-12-31).
_DAY_ONE, _DAY_LAST = -719_162, 2_932_896
# Microseconds since the epoch of Python's first and last datetimes.
_US_ONE, _US_LAST = _DAY_ONE * 86_400_000_000, (_DAY_LAST + 1) * 86_400_000_000 - 1
# Time zones of timestamps whose text Arrow writes here: UTC and fixed offsets (a named
# zone's offsets come from Arrow's zone database, Python's from zoneinfo's).
FIXED_ZONE = re.compile(r"^(UTC|[+-][0-9]{2}:[0-9]{2})$")


def _timestamp_text(column: pa.Array) -> pa.Array | None:
    """``datetime.isoformat()`` of each value (the wall time at the column's offset, a
    fraction only where it has microseconds, the offset as +HH:MM), built in Arrow; None
    for nanoseconds (as_py gives pandas' Timestamp), a named zone, or a value beyond
    Python's datetimes (as_py raises, and so must this path)."""
    kind = column.type
    if kind.unit == "ns" or not (kind.tz is None or FIXED_ZONE.match(kind.tz)):
        return None
    utc = column.cast(pa.timestamp("us", kind.tz))
    local = pc.local_timestamp(utc) if kind.tz else utc
    for moments in (utc, local):
        micros = pc.min_max(moments.cast(pa.int64()))
        low, high = micros["min"].as_py(), micros["max"].as_py()
        if low is not None and (low < _US_ONE or high > _US_LAST):
            return None
    text = pc.strftime(local, "%Y-%m-%dT%H:%M:%S")  # seconds with 6 digits of fraction
    fraction = pc.add(pc.multiply(pc.millisecond(local), 1000), pc.microsecond(local))
    text = pc.if_else(pc.equal(fraction, 0), pc.utf8_slice_codeunits(text, 0, 19), text)
    if kind.tz:
        offset = pc.subtract(local.cast(pa.int64()), utc.cast(pa.int64()))
        minutes = pc.abs(pc.divide(offset, 60_000_000))
        sign = pc.if_else(pc.less(offset, 0), "-", "+")
        hours = pc.utf8_lpad(pc.divide(minutes, 60).cast(pa.string()), 2, "0")
        rest = pc.subtract(minutes, pc.multiply(pc.divide(minutes, 60), 60))
        rest = pc.utf8_lpad(rest.cast(pa.string()), 2, "0")
        text = pc.binary_join_element_wise(text, sign, hours, ":", rest, "")
    return text.cast(pa.large_string())


def _fits_any_timestamp(kind: pa.DataType, zone: tzinfo) -> bool:
    """Whether value_error accepts every value of a column of ``kind`` as a timestamp
    (its text from ``_timestamp_text``): any with an offset (within Python's years), and
    naive ones when the source's zone is UTC (no clock there skips an hour)."""
    if not pa.types.is_timestamp(kind):
        return False
    return kind.tz is not None or zone is UTC or getattr(zone, "key", None) == "UTC"


def _checked_values(
    values: list[Any], declared: str, zone: tzinfo
) -> tuple[pa.Array, dict[int, str]]:
    """Python values' text (``_text``) and the rows whose value does not fit ``declared``
    ({row index: reason}), with the reason ``_check_row`` gives: value_error's on the value
    itself, else "holds an unpaired surrogate". A column of one scalar type (text then
    names the value) is checked one distinct text at a time; a mixed one value by value."""
    kinds = set(map(type, values)) - {type(None)}
    if kinds == {int} or kinds == {bool}:
        try:
            arrow = pa.array(values, pa.int64() if kinds == {int} else pa.bool_())
            return _checked_arrow(arrow, declared, zone)
        except OverflowError:
            pass  # beyond long: Python's text
    if kinds <= {str}:
        texts = values
    elif kinds == {float}:  # str is float's _text, without a call of it per value
        texts = [None if v is None else str(v) for v in values]
    else:
        texts = [_text(v) for v in values]
    errors: dict[int, str] = {}
    try:
        text = _text_array(texts)
    except UnicodeEncodeError:  # lone surrogates: rejected, their text never stored
        texts = list(texts)
        for i, v in enumerate(values):
            if isinstance(v, str) and _unencodable(v):
                errors[i] = value_error(declared, v, zone) or "holds an unpaired surrogate"
                texts[i] = None
        text = _text_array(texts)
    if len(kinds) <= 1 and not kinds & {dict, list}:
        found = _column_errors(declared, text, lambda at: [values[i] for i in at], zone)
    else:
        found = _mixed_errors(declared, values, texts, zone)
    return text, {**errors, **found}


def _text_array(texts: list[str | None]) -> pa.Array:
    return pa.array(texts, pa.large_string())


def _column_errors(
    declared: str, text: pa.Array, values_at: Callable[[list[int]], list[Any]], zone: tzinfo
) -> dict[int, str]:
    """{row index: value_error's reason} for a column whose text names its value (one
    Python type): ``values_at`` gives the values at row indices. Only texts the certain
    pattern does not match are looked at, one distinct text at a time (that pattern's
    matches fit whatever the value's type: its text then reads as the declared type)."""
    declared = declared.strip()
    if declared == "string":
        return {}
    unsure = text
    pattern = _certain_pattern(declared)
    if pattern is not None:
        unsure = text.filter(pc.invert(pc.match_substring_regex(text, f"^(?:{pattern})?$")))
    distinct = pc.unique(unsure).drop_null()
    if not len(distinct):
        return {}
    firsts = pc.index_in(distinct, value_set=text).to_pylist()
    errors = {
        t: error
        for t, v in zip(distinct.to_pylist(), values_at(firsts), strict=True)
        if (error := value_error(declared, v, zone))
    }
    if not errors:
        return {}
    bad = pc.indices_nonzero(pc.is_in(text, value_set=pa.array(list(errors), text.type)))
    return dict(zip(bad.to_pylist(), map(errors.get, text.take(bad).to_pylist()), strict=True))


def _mixed_errors(
    declared: str, values: list[Any], texts: list[str | None], zone: tzinfo
) -> dict[int, str]:
    """{row index: value_error's reason} value by value, for a column of several Python
    types (a JSON field holding 1 and "1": the same text, not the same fit). Scalars are
    looked at once per type and text; objects and arrays each (their reason is their repr,
    which their sorted text does not name)."""
    seen: dict[tuple[type, str], str | None] = {}
    errors = {}
    for i, (v, t) in enumerate(zip(values, texts, strict=True)):
        if t is None:
            continue
        if isinstance(v, dict | list):
            error = value_error(declared, v, zone)
        elif (key := (type(v), t)) in seen:
            error = seen[key]
        else:
            error = seen[key] = value_error(declared, v, zone)
        if error:
            errors[i] = error
    return errors


def _unencodable(value: Any) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds an unpaired surrogate"
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, sort_keys=True)
    return str(value)
