"""Files dropped in the landing bucket into bronze, each exactly once.

The keys of the files a commit ingested are its position: the set of ingested
files is the union of positions in the bronze table's snapshot ancestry, so a
file counts as ingested only once its rows (or its quarantine record) are committed.
Each row is checked against the source's declared schema; bronze keeps the raw
text of each value, and rows or whole files that do not fit go to quarantine with
the file, line and reason.

Memory follows a chunk, not a file or a batch: each file is parsed and checked a
block at a time and every chunk goes straight to the background data-file writer,
which holds at most two groups. A file's bytes stream from S3 once into an anonymous
local file (``body.spool``), which the readers read a block at a time (Parquet with
random access): a 2 GB object never sits in memory; files fetched ahead wait on disk.
The data files stay invisible until the one commit that also records the files'
versions as the position. A file that fails after some of its rows went to the
writer starts the batch over (nothing was committed), reading it the safe way.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import pyarrow as pa
from botocore.exceptions import ClientError
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import LandingSource
from lakehouse.ingest.landing.body import Body, declared_compression, spool
from lakehouse.ingest.landing.parsers import ArrowGaveUp, parse_file
from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    append_files_with_position,
    append_with_position,
    committed_positions,
    conform,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.data_files import GROUP_BYTES, BackgroundDataFiles

# Files fetched ahead of the one being parsed, so that S3 latency overlaps the parsing:
# their bytes wait spooled on local disk (TMPDIR), not in memory, at most this many.
READ_AHEAD = 3

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FileBatch:
    files: list[str]  # versions (key@etag) ingested by this batch
    rows_read: int = 0
    landed: int = 0
    quarantined: int = 0
    files_quarantined: list[str] = field(default_factory=list)
    files_changed: list[str] = field(default_factory=list)
    snapshot_id: int | None = None

    @property
    def records_in(self) -> int:
        """Rows read plus files rejected whole: what must equal landed + quarantined."""
        return self.rows_read + len(self.files_quarantined)


ETAG = re.compile(r"^[0-9a-f]{32}(-\d+)?$")


def file_version(key: str, etag: str) -> str:
    """A file's identity in positions: its key and content hash, so a re-upload is new."""
    return key + "@" + etag.strip('"')


def split_version(version: str) -> tuple[str, str | None]:
    key, _, etag = version.rpartition("@")
    return (key, etag) if key and ETAG.match(etag) else (version, None)


def ingested_files(catalog: Catalog, source: LandingSource) -> set[str]:
    """File versions (``key@etag``) committed to bronze."""
    table = ensure_table(catalog, source.bronze_table, source.layout)
    return {key for position in committed_positions(table, source.name) for key in position}


def list_new_files(
    s3_client,
    bucket: str,
    source: LandingSource,
    already: set[str],
    limit: int,
    max_bytes: int | None = None,
) -> list[str]:
    """Versions under the source's prefix not yet ingested, by key: at most ``limit`` and,
    past the first, at most ``max_bytes`` of objects (a batch bounded by its size too)."""
    new: list[tuple[str, int]] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=source.key_prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                continue
            version = file_version(obj["Key"], obj["ETag"])
            if version not in already:
                new.append((version, obj.get("Size", 0)))
    chosen: list[str] = []
    total = 0
    for version, size in sorted(new)[:limit]:
        total += size
        if chosen and max_bytes is not None and total > max_bytes:
            break
        chosen.append(version)
    return chosen


@dataclass
class FileBody:
    """One landing file version fetched (spooled to local disk), not yet parsed."""

    key: str
    version: str
    uri: str
    body: Body


def fetch_file(s3_client, bucket: str, source: LandingSource, requested: str) -> FileBody | None:
    """Fetch one file version (in a worker thread); None if it changed since it was listed.

    The object streams from one GET into a local spool a chunk at a time (decompressed
    as the source declares), so memory holds a chunk, not the object. The GET names the
    listed ETag (If-Match): a file overwritten before the read is skipped until the next
    listing; the one GET streams that version whole, so versions are never mixed."""
    key, etag = split_version(requested)
    try:
        # IfMatch: the file read is exactly the version the sensor listed
        extra = {"IfMatch": etag} if etag else {}
        response = s3_client.get_object(Bucket=bucket, Key=key, **extra)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("PreconditionFailed", "412"):
            return None
        raise
    version = file_version(key, response["ETag"])
    uri = f"s3://{bucket}/{key}"
    compression = "none"
    if source.format != "parquet":
        compression = declared_compression(uri, source.dialect.compression)
    try:
        body = spool(response["Body"], compression, text=source.format != "parquet")
    finally:
        response["Body"].close()
    return FileBody(key, version, uri, body)


class _Again(Exception):
    """A file failed after some of its rows were handed to the data files: the batch
    starts over, reading that file as ``how`` says (``csv``: by the csv module, or a
    quarantine reason for the whole file)."""

    def __init__(self, version: str, how: str) -> None:
        super().__init__(version)
        self.version, self.how = version, how


def prefetched(function: Callable[[T], R], items: Iterable[T], depth: int) -> Iterator[R]:
    """``map(function, items)`` in order, with up to ``depth`` calls running ahead."""
    with ThreadPoolExecutor(depth) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def ingest_files(
    catalog: Catalog,
    s3_client,
    bucket: str,
    source: LandingSource,
    keys: list[str],
    run_id: str,
    data_file_bytes: int = GROUP_BYTES,
) -> FileBatch:
    """Land ``keys`` in bronze and their bad rows in quarantine, each file exactly once.

    ``data_file_bytes``: Arrow bytes per bronze data file written while later files
    are still being fetched.
    """
    layout = source.layout
    # files that failed part-way in an earlier attempt: version -> "csv" (read by the
    # csv module) or the reason the whole file is quarantined
    again: dict[str, str] = {}

    def attempt() -> FileBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        done = {k for pos in committed_positions(bronze, source.name) for k in pos}
        schema = bronze.schema().as_arrow()
        batch = FileBatch(files=[])
        rejects = QuarantineBuffer(source.name, run_id, datetime.now(UTC))
        reject_versions: list[str] = []
        lineage = {"_source": source.name, "_ingested_at": rejects.ingested_at, "_run_id": run_id}

        # Bronze data files are written while later files are fetched and parsed;
        # until the bronze commit names them with the position no snapshot does.
        files = BackgroundDataFiles(bronze, data_file_bytes)
        held: list[pa.Table] = []  # rows with columns bronze does not have yet

        def hand_on(rows: pa.Table) -> None:
            if rows.schema.equals(schema):
                files.add_table(rows)
            elif rows.num_rows:
                held.append(rows)

        try:
            # bodies are fetched ahead by worker threads, parsed here in key order a
            # chunk at a time, each chunk handed to the data files as it is checked
            fetch = partial(fetch_file, s3_client, bucket, source)
            bodies = prefetched(fetch, keys, READ_AHEAD)
            for requested, got in zip(keys, bodies, strict=True):
                if got is None:
                    batch.files_changed.append(split_version(requested)[0])  # next tick
                    continue
                try:
                    if got.version in done:
                        continue
                    batch.files.append(got.version)
                    sink = BronzeRows(schema, lineage, hand_on)
                    file_rejects = QuarantineBuffer(source.name, run_id, rejects.ingested_at)
                    count = _parse(got, source, sink, file_rejects, again.get(got.version))
                finally:
                    got.body.close()  # the spooled bytes are not needed any more
                batch.rows_read += count
                rejects.rows += file_rejects.rows
                reject_versions += [got.version] * len(file_rejects.rows)
                if count == 0 and file_rejects.rows:
                    batch.files_quarantined.append(got.key)
            todo = batch.files
            if not todo:
                files.discard()
                return batch
            if held:
                # columns the files started carrying join bronze as text (metadata-only add)
                new = {c: None for t in held for c in t.column_names if c not in schema.names}
                bronze = evolution.add_text_columns(bronze, new)
                files.use_table(bronze)
                for rows in held:
                    files.add_table(conform(rows, bronze.schema().as_arrow()))
            files.flush()  # the last group is written while quarantine commits
            # Quarantine first, with its own position: after a crash between the two
            # commits the retry skips the files quarantine already holds.
            q_done = {k for pos in committed_positions(quarantine, source.name) for k in pos}
            fresh = [
                r for r, v in zip(rejects.rows, reject_versions, strict=True) if v not in q_done
            ]
            if fresh:
                rejects.rows = fresh
                append_with_position(quarantine, rejects.to_arrow(), source.name, todo, run_id)
            written = files.finish()
        except BaseException:
            files.discard()
            raise
        try:
            batch.snapshot_id = append_files_with_position(
                bronze, written, source.name, todo, run_id
            )
        except CommitFailedException:
            files.discard()  # another commit won: these files are referenced by nothing
            raise
        # any other error leaves the files alone: the commit's outcome is unknown
        batch.landed = files.rows
        batch.quarantined = batch.records_in - batch.landed
        return batch

    while True:
        try:
            return with_commit_retries(attempt)
        except _Again as failed:  # nothing was committed; at most twice per file
            if again.get(failed.version) not in (None, "csv"):
                raise AssertionError(f"{failed.version} failed when quarantined whole") from None
            again[failed.version] = failed.how


def _parse(got: FileBody, source: LandingSource, sink: BronzeRows, rejects, how: str | None) -> int:
    """Rows read from one file into ``sink`` and ``rejects``. A file the reader gives up on
    is quarantined whole: at once if none of its rows has left yet, else by ``_Again``."""
    if how not in (None, "csv"):
        rejects.add(source.format, how, None, _file=got.uri, _row=None)
        return 0
    try:
        count = parse_file(got.body, got.uri, source, sink, rejects, arrow=how is None)
        sink.finish()
        return count
    except ArrowGaveUp:
        raise _Again(got.version, "csv") from None
    except (csv.Error, ValueError) as exc:
        reason = f"unreadable {source.format} file: {exc}"
        if sink.handed_on:
            raise _Again(got.version, reason) from None
        rejects.rows.clear()
        rejects.add(source.format, reason, None, _file=got.uri, _row=None)
        return 0


class BronzeRows:
    """Good rows of one file, handed on a chunk at a time in bronze's layout with the
    batch's lineage: rows of the per-row paths every ``CHUNK_ROWS``, Arrow tables of the
    column-wise paths as they come. Columns new to bronze come as text after its own."""

    CHUNK_ROWS = 32_768

    def __init__(
        self, schema: pa.Schema, lineage: dict[str, Any], hand_on: Callable[[pa.Table], None]
    ) -> None:
        self.schema, self.lineage, self.hand_on = schema, lineage, hand_on
        self.dicts: list[dict[str, Any]] = []
        self.handed_on = 0  # rows

    def append(self, row: dict[str, Any]) -> None:
        self.dicts.append(row)
        if len(self.dicts) >= self.CHUNK_ROWS:
            self._hand_on_dicts()

    def add_table(self, table: pa.Table) -> None:
        self._hand_on(table)

    def finish(self) -> None:
        self._hand_on_dicts()

    def _hand_on_dicts(self) -> None:
        if self.dicts:
            table, self.dicts = _from_dicts(self.dicts), []
            self._hand_on(table)

    def _hand_on(self, table: pa.Table) -> None:
        if table.num_rows:
            new = sorted(c for c in table.column_names if self.schema.get_field_index(c) < 0)
            layout = pa.schema([*self.schema, *(pa.field(c, pa.large_string()) for c in new)])
            self.hand_on(_in_layout(table, layout, self.lineage))
            self.handed_on += table.num_rows


def _from_dicts(dicts: list[dict[str, Any]]) -> pa.Table:
    # every key of every row (a file's new column is not in the first row's file)
    names = {k: pa.int64() if k == "_row" else pa.string() for d in dicts for k in d}
    return pa.Table.from_pylist(dicts, pa.schema(names))


def _in_layout(table: pa.Table, schema: pa.Schema, lineage: dict[str, Any]) -> pa.Table:
    """``table`` in ``schema`` (bronze's layout): lineage columns from ``lineage``, built
    in their bronze type (no cast of n values), columns it lacks null."""
    n = table.num_rows
    columns = []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            columns.append(column if column.type == f.type else column.cast(f.type))
        elif f.name in lineage:
            columns.append(pa.repeat(pa.scalar(lineage[f.name], f.type), n))
        else:
            columns.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


class LandedRows:
    """Good rows of a batch: row dicts from the per-row paths (CSV in a declared dialect
    or reordered), Arrow tables from the column-wise ones; lineage columns are added
    once, at the end."""

    def __init__(self) -> None:
        self.dicts: list[dict[str, Any]] = []
        self.tables: list[pa.Table] = []

    def append(self, row: dict[str, Any]) -> None:
        self.dicts.append(row)

    def add_table(self, table: pa.Table) -> None:
        self.tables.append(table)

    def __len__(self) -> int:
        return len(self.dicts) + sum(t.num_rows for t in self.tables)

    def columns(self) -> set[str]:
        return {k for d in self.dicts for k in d} | {c for t in self.tables for c in t.column_names}

    def to_arrow(
        self, schema: pa.Schema, source: str, ingested_at: datetime, run_id: str
    ) -> pa.Table:
        """All good rows in the bronze layout, with the batch's lineage columns."""
        parts = [_from_dicts(self.dicts)] if self.dicts else []
        lineage = {"_source": source, "_ingested_at": ingested_at, "_run_id": run_id}
        out = [_in_layout(table, schema, lineage) for table in parts + self.tables]
        return pa.concat_tables(out) if out else schema.empty_table()
