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
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import ClientError
from pyiceberg.catalog import Catalog

from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.ingest.values import value_error
from lakehouse.sources import LandingSource
from lakehouse.tables.commits import (
    append_with_position,
    committed_positions,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.schemas import QUARANTINE

# Partner files can carry large free-text fields; the csv module's default is 128 KiB.
csv.field_size_limit(64 * 1024 * 1024)


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


def ingest_files(
    catalog: Catalog,
    s3_client,
    bucket: str,
    source: LandingSource,
    keys: list[str],
    run_id: str,
) -> FileBatch:
    layout = source.layout

    def attempt() -> FileBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        done = {k for pos in committed_positions(bronze, source.name) for k in pos}
        batch = FileBatch(files=[])
        ingested_at = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        rejects = QuarantineBuffer(source.name, run_id, ingested_at)
        reject_versions: list[str] = []
        for requested in keys:
            key, etag = split_version(requested)
            try:
                # IfMatch: the file read is exactly the version the sensor listed
                extra = {"IfMatch": etag} if etag else {}
                response = s3_client.get_object(Bucket=bucket, Key=key, **extra)
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("PreconditionFailed", "412"):
                    batch.files_changed.append(key)  # re-uploaded since listing: next tick
                    continue
                raise
            version = file_version(key, response["ETag"])
            if version in done:
                continue
            body = response["Body"].read()
            batch.files.append(version)
            uri = f"s3://{bucket}/{key}"
            before, rows_before = len(rejects), len(rows)
            try:
                read = parse_file(body, uri, source, rows, rejects)
            except (csv.Error, ValueError) as exc:
                # a file the reader gives up on mid-way is quarantined whole
                del rows[rows_before:]
                del rejects.rows[before:]
                reason = f"unreadable {source.format} file: {exc}"
                rejects.add(source.format, reason, None, _file=uri, _row=None)
                read = 0
            batch.rows_read += read
            reject_versions += [version] * (len(rejects) - before)
            if read == 0 and len(rejects) > before:
                batch.files_quarantined.append(key)
        todo = batch.files
        if not todo:
            return batch
        for row in rows:
            row.update(_source=source.name, _ingested_at=ingested_at, _run_id=run_id)

        # Quarantine first, with its own position: after a crash between the two
        # commits the retry skips the files quarantine already holds.
        q_done = {k for pos in committed_positions(quarantine, source.name) for k in pos}
        fresh = [r for r, v in zip(rejects.rows, reject_versions, strict=True) if v not in q_done]
        if fresh:
            rejects.rows = fresh
            append_with_position(quarantine, rejects.to_arrow(), source.name, todo, run_id)
        arrow = pa.Table.from_pylist(rows, schema=layout.arrow_schema())
        batch.snapshot_id = append_with_position(bronze, arrow, source.name, todo, run_id)
        batch.landed = len(rows)
        batch.quarantined = batch.records_in - batch.landed
        return batch

    return with_commit_retries(attempt)


def parse_file(body: bytes, uri: str, source: LandingSource, rows, rejects) -> int:
    """Append good rows to ``rows`` and bad ones to ``rejects``; return data rows read.

    A file that cannot be read at all (empty, not UTF-8, wrong header, corrupt
    Parquet) becomes one quarantine record for the whole file and counts zero rows.
    """
    if not body.strip():
        rejects.add("empty_file", "file is empty", None, _file=uri, _row=None)
        return 0
    if source.format == "parquet":
        return _parse_parquet(body, uri, source, rows, rejects)
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        rejects.add("utf8", f"file is not valid UTF-8: {exc}", None, _file=uri, _row=None)
        return 0
    if source.format == "csv":
        return _parse_csv(text, uri, source, rows, rejects)
    return _parse_jsonl(text, uri, source, rows, rejects)


def _check_row(values: dict[str, Any], line: int, raw: str, uri, source, rows, rejects) -> None:
    problems = [
        f"{column}: {error}"
        for column, declared in source.columns.items()
        if (error := value_error(declared, values.get(column)) or _unencodable(values.get(column)))
    ]
    if problems:
        rejects.add("schema", "; ".join(problems), raw, _file=uri, _row=line)
        return
    row = {c: _text(values.get(c)) for c in source.columns}
    rows.append({**row, "_file": uri, "_row": line})


def _parse_csv(text: str, uri: str, source: LandingSource, rows, rejects) -> int:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader)]
    expected = list(source.columns)
    if header != expected:
        rejects.add(
            "header",
            f"header {header} does not match the declared columns {expected}",
            text[:4096],
            _file=uri,
            _row=1,
        )
        return 0
    count = 0
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
        record = dict(zip(expected, values, strict=True))
        _check_row(record, line, ",".join(values), uri, source, rows, rejects)
    return count


def _parse_jsonl(text: str, uri: str, source: LandingSource, rows, rejects) -> int:
    count = 0
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            rejects.add("json", f"not valid JSON: {exc.msg}", raw[:4096], _file=uri, _row=line)
            continue
        if not isinstance(record, dict):
            kind = type(record).__name__
            rejects.add("json_object", f"a JSON {kind}, not an object", raw, _file=uri, _row=line)
            continue
        _check_row(record, line, raw[:4096], uri, source, rows, rejects)
    return count


def _parse_parquet(body: bytes, uri: str, source: LandingSource, rows, rejects) -> int:
    try:
        table = pq.read_table(io.BytesIO(body))
    except (pa.ArrowInvalid, OSError) as exc:
        rejects.add("parquet", f"unreadable Parquet file: {exc}", None, _file=uri, _row=None)
        return 0
    missing = [c for c in source.columns if c not in table.column_names]
    if missing:
        reason = f"missing declared columns {missing}; file has {table.column_names}"
        rejects.add("header", reason, None, _file=uri, _row=None)
        return 0
    for line, record in enumerate(table.select(list(source.columns)).to_pylist(), start=1):
        raw = json.dumps(record, default=str)
        _check_row(record, line, raw, uri, source, rows, rejects)
    return table.num_rows


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
    return str(value)
