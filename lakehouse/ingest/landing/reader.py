"""Files dropped in the landing bucket into bronze, each exactly once.

The keys of the files a commit ingested are its position: the set of ingested
files is the union of positions in the bronze table's snapshot ancestry, so a
file counts as ingested only once its rows (or its quarantine record) are committed.
Each row is checked against the source's declared schema; bronze keeps the raw
text of each value, and rows or whole files that do not fit go to quarantine with
the file, line and reason.
"""

from __future__ import annotations

import csv
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pyarrow as pa
from botocore.exceptions import ClientError
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.declarations.sources import LandingSource
from lakehouse.ingest.landing.parsers import parse_file
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

# Files fetched and parsed ahead of the one being added to the batch: S3 latency
# and Arrow's GIL-free parsing overlap; at most this many parsed files wait in memory.
READ_AHEAD = 4

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
    s3_client, bucket: str, source: LandingSource, already: set[str], limit: int
) -> list[str]:
    """Versions under the source's prefix not yet ingested, by key, at most ``limit``."""
    new: list[str] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=source.key_prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/"):
                continue
            version = file_version(obj["Key"], obj["ETag"])
            if version not in already:
                new.append(version)
    return sorted(new)[:limit]


@dataclass
class FileRead:
    """One landing file fetched and parsed, not yet part of a batch."""

    key: str
    version: str
    rows_read: int
    rows: pa.Table  # good rows in the bronze layout, lineage included
    rejects: list[dict[str, Any]]


def read_file(
    s3_client,
    bucket: str,
    source: LandingSource,
    requested: str,
    batch: QuarantineBuffer,
    schema: pa.Schema,
) -> FileRead | None:
    """Fetch and parse one file version; None if it changed since it was listed.

    Runs in a worker thread: it fills its own buffers (``batch`` lends the quarantine
    row defaults and the lineage values), and the batch takes them over in key order.
    Good rows come back in bronze's ``schema`` plus any columns new to it, so the
    Arrow work runs here, beside the GIL-free parsing, not in the batch's thread.
    """
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
    body = response["Body"].read()
    uri = f"s3://{bucket}/{key}"
    rows = LandedRows()
    rejects = QuarantineBuffer(batch.source, batch.run_id, batch.ingested_at)
    try:
        count = parse_file(body, uri, source, rows, rejects)
    except (csv.Error, ValueError) as exc:
        # a file the reader gives up on mid-way is quarantined whole
        rows = LandedRows()
        rejects.rows.clear()
        reason = f"unreadable {source.format} file: {exc}"
        rejects.add(source.format, reason, None, _file=uri, _row=None)
        count = 0
    new = sorted(rows.columns() - set(schema.names))
    layout = pa.schema([*schema, *(pa.field(c, pa.large_string()) for c in new)])
    table = rows.to_arrow(layout, batch.source, batch.ingested_at, batch.run_id)
    return FileRead(key, version, count, table, rejects.rows)


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

    def attempt() -> FileBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        done = {k for pos in committed_positions(bronze, source.name) for k in pos}
        schema = bronze.schema().as_arrow()
        batch = FileBatch(files=[])
        rejects = QuarantineBuffer(source.name, run_id, datetime.now(UTC))
        reject_versions: list[str] = []

        def read(requested: str) -> FileRead | None:
            return read_file(s3_client, bucket, source, requested, rejects, schema)

        # Bronze data files are written while later files are fetched and parsed;
        # until the bronze commit names them with the position no snapshot does.
        files = BackgroundDataFiles(bronze, data_file_bytes)
        held: list[pa.Table] = []  # rows with columns bronze does not have yet
        try:
            # files are fetched and parsed ahead by worker threads, taken in key order
            reads = prefetched(read, keys, READ_AHEAD)
            for requested, got in zip(keys, reads, strict=True):
                if got is None:
                    batch.files_changed.append(split_version(requested)[0])  # next tick
                    continue
                if got.version in done:
                    continue
                batch.files.append(got.version)
                batch.rows_read += got.rows_read
                if got.rows.schema.equals(schema):
                    files.add_table(got.rows)
                elif got.rows.num_rows:
                    held.append(got.rows)
                rejects.rows += got.rejects
                reject_versions += [got.version] * len(got.rejects)
                if got.rows_read == 0 and got.rejects:
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

    return with_commit_retries(attempt)


class LandedRows:
    """Good rows of a batch: row dicts from the per-row path, Arrow tables from the
    column-wise CSV path; lineage columns are added once, at the end."""

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
        # every key of every row (a file's new column is not in the first row's file)
        names = {k: pa.int64() if k == "_row" else pa.string() for d in self.dicts for k in d}
        parts = [pa.Table.from_pylist(self.dicts, pa.schema(names))] if self.dicts else []
        out = []
        values = {"_source": source, "_ingested_at": ingested_at, "_run_id": run_id}
        for table in parts + self.tables:
            n = table.num_rows
            columns = []
            for f in schema:
                if f.name in table.column_names:
                    column = table[f.name]
                    columns.append(column if column.type == f.type else column.cast(f.type))
                elif f.name in values:  # built in the bronze type: no cast of n values
                    columns.append(pa.repeat(pa.scalar(values[f.name], f.type), n))
                else:
                    columns.append(pa.nulls(n, f.type))
            out.append(pa.Table.from_arrays(columns, schema=schema))
        return pa.concat_tables(out) if out else schema.empty_table()
