"""Files dropped in the landing bucket into bronze, each exactly once.

The keys of the files a commit ingested are its position: the set of ingested
files is the union of positions in the bronze table's snapshot ancestry, so a
file is skipped only once its rows (or its quarantine record) are committed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog

from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.tables.commits import (
    append_with_position,
    committed_positions,
    ensure_table,
    with_commit_retries,
)
from lakehouse.tables.schemas import QUARANTINE, TableLayout


@dataclass(frozen=True)
class LandingSource:
    """Files under ``s3://<bucket>/<name>/`` with a declared CSV header."""

    name: str
    columns: tuple[str, ...]

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    @property
    def bronze_table(self) -> str:
        return f"bronze.{self.name}"

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.name}"


@dataclass
class FileBatch:
    files: list[str]
    rows_read: int = 0
    landed: int = 0
    quarantined: int = 0
    files_quarantined: list[str] = field(default_factory=list)
    snapshot_id: int | None = None


def ingested_files(catalog: Catalog, source: LandingSource, layout: TableLayout) -> set[str]:
    table = ensure_table(catalog, source.bronze_table, layout)
    return {key for position in committed_positions(table, source.name) for key in position}


def list_new_files(
    s3_client, bucket: str, source: LandingSource, already: set[str], limit: int
) -> list[str]:
    """Keys under the source's prefix not yet ingested, oldest key first, at most ``limit``."""
    new: list[str] = []
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=source.prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key not in already and not key.endswith("/"):
                new.append(key)
    return sorted(new)[:limit]


def ingest_files(
    catalog: Catalog,
    s3_client,
    bucket: str,
    source: LandingSource,
    layout: TableLayout,
    keys: list[str],
    run_id: str,
) -> FileBatch:
    def attempt() -> FileBatch:
        bronze = ensure_table(catalog, source.bronze_table, layout)
        quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
        done = {k for pos in committed_positions(bronze, source.name) for k in pos}
        todo = [k for k in keys if k not in done]
        batch = FileBatch(files=todo)
        if not todo:
            return batch
        ingested_at = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        rejects = QuarantineBuffer(source.name, run_id, ingested_at)
        for key in todo:
            body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
            uri = f"s3://{bucket}/{key}"
            before = len(rejects)
            read = _parse_csv(body, uri, source, rows, rejects)
            batch.rows_read += read
            if read == 0 and len(rejects) > before:
                batch.files_quarantined.append(key)
        for row in rows:
            row.update(_source=source.name, _ingested_at=ingested_at, _run_id=run_id)

        q_done = {k for pos in committed_positions(quarantine, source.name) for k in pos}
        fresh = [r for r in rejects.rows if r["_file"].split("/", 3)[-1] not in q_done]
        if fresh:
            rejects.rows = fresh
            append_with_position(quarantine, rejects.to_arrow(), source.name, todo, run_id)
        arrow = pa.Table.from_pylist(rows, schema=layout.arrow_schema())
        batch.snapshot_id = append_with_position(bronze, arrow, source.name, todo, run_id)
        batch.landed = len(rows)
        batch.quarantined = batch.rows_read - batch.landed + len(batch.files_quarantined)
        return batch

    return with_commit_retries(attempt)


def _parse_csv(body: bytes, uri: str, source: LandingSource, rows, rejects) -> int:
    """Append good rows to ``rows`` and bad ones to ``rejects``; return data rows read."""
    if not body.strip():
        rejects.add("empty_file", "file is empty", None, _file=uri, _row=None)
        return 0
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        rejects.add("utf8", f"file is not valid UTF-8: {exc}", None, _file=uri, _row=None)
        return 0
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip() for h in next(reader)]
    if tuple(header) != source.columns:
        rejects.add(
            "header",
            f"header {header} does not match the declared columns {list(source.columns)}",
            text[:4096],
            _file=uri,
            _row=None,
        )
        return 0
    count = 0
    for line_no, values in enumerate(reader, start=2):
        if not values:
            continue
        count += 1
        if len(values) != len(source.columns):
            rejects.add(
                "column_count",
                f"expected {len(source.columns)} fields, found {len(values)}",
                ",".join(values),
                _file=uri,
                _row=line_no,
            )
            continue
        rows.append(
            {**dict(zip(source.columns, values, strict=True)), "_file": uri, "_row": line_no}
        )
    return count
