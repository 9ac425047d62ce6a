"""Data files written while a batch is still being read, committed later in one snapshot.

Ingestion used to hold every Arrow batch until the source was drained and then let
``Table.append`` write the Parquet files and commit: the write sat on the critical
path after the last poll. Here groups of rows are written by a background thread
(Parquet encoding and compression release the GIL) while the caller keeps
reading, exactly as pyiceberg's own append writes them, and the caller commits
the resulting ``DataFile``s together with its source position
(``commits.append_files_with_position``), as the Flink and Kafka Connect sinks do.

Files are invisible until that commit: a run that crashes or loses the commit
leaves them as orphans that no snapshot references, so no reader ever sees them.
A run that fails with an exception deletes what it wrote (``discard``); after a
kill -9 they stay on storage until orphan-file removal (see
``lakehouse.tables.maintenance``).
"""

from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import (
    bin_pack_arrow_table,
    pyarrow_to_schema,
    write_file,
)
from pyiceberg.manifest import DataFile
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties, WriteTask
from pyiceberg.utils.properties import property_as_int

from lakehouse.tables.commits import conform
from lakehouse.tables.pyiceberg_internals import check_schema_compatible, dataframe_to_data_files

# Rows are handed to the writer thread once this much Arrow data is pending: large
# enough that a 500k-event batch makes a handful of files, small enough that most
# of the write overlaps the reading.
GROUP_BYTES = 16 * 1024 * 1024
# Groups being written or waiting for the writer: past this the caller waits for the
# oldest, so rows read faster than they are written hold two groups, not the batch.
GROUPS_IN_FLIGHT = 2


class BackgroundDataFiles:
    """Writes record batches to data files of ``table`` in a background thread."""

    def __init__(self, table: Table, group_bytes: int = GROUP_BYTES) -> None:
        self.table = table
        self.group_bytes = group_bytes
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0
        self.rows = 0
        self.futures: list[Future[list[DataFile]]] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-files")

    def add(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.pending.append(batch)
        self.pending_bytes += batch.nbytes
        self.rows += batch.num_rows
        if self.pending_bytes >= self.group_bytes:
            self._submit()

    def add_table(self, rows: pa.Table) -> None:
        for batch in rows.to_batches():
            self.add(batch)

    def use_table(self, table: Table) -> None:
        """Write what is pending against the table as it was, later rows against ``table``
        (the same table after a schema change; a group's rows share one schema)."""
        self._submit()
        self.table = table

    def flush(self) -> None:
        """Start writing what is pending now, so the write overlaps the caller's next step."""
        self._submit()

    def finish(self) -> list[DataFile]:
        """Write what is pending and wait for every file; an error in the writer surfaces here."""
        self._submit()
        try:
            return [f for future in self.futures for f in future.result()]
        finally:
            self.executor.shutdown(wait=True)

    def discard(self) -> None:
        """Delete the files written so far (best effort): the batch will not be committed."""
        self.pending = []
        self.executor.shutdown(wait=True, cancel_futures=True)
        for future in self.futures:
            if future.cancelled() or future.exception() is not None:
                continue
            for data_file in future.result():
                # left behind it is an orphan, never referenced; orphan-file removal reclaims it
                with contextlib.suppress(OSError):
                    self.table.io.delete(data_file.file_path)

    def _submit(self) -> None:
        if not self.pending:
            return
        batches, self.pending, self.pending_bytes = self.pending, [], 0
        self.futures.append(self.executor.submit(self._write, self.table, batches))
        unfinished = [future for future in self.futures if not future.done()]
        for future in unfinished[: len(unfinished) - GROUPS_IN_FLIGHT]:
            future.exception()  # waits; an error surfaces from finish()

    @staticmethod
    def _write(table: Table, batches: list[pa.RecordBatch]) -> list[DataFile]:
        return write_data_files(table, pa.Table.from_batches(batches))


def write_data_files(
    table: Table, rows: pa.Table, target_bytes: int | None = None
) -> list[DataFile]:
    """Write ``rows`` as data files of ``table`` without committing them.

    Split from the commit so a caller can write while it does other work (another
    table's commit) and then commit the files with its position
    (``append_files_with_position``). Files written by a run that never commits are orphans:
    invisible to readers, removed by maintenance. A batch whose rows all fall in one
    partition (bronze: one ingestion time per batch) skips pyiceberg's group-by and
    filter copy of the whole batch. ``target_bytes`` (of Arrow memory per file) overrides
    the table's ``write.target-file-size-bytes`` there: compaction scales it by the
    inputs' compression so the files come out near the target on storage.
    """
    rows = conform(rows, table.schema().as_arrow())
    if rows.num_rows == 0:
        return []
    metadata = table.metadata
    check_schema_compatible(metadata, rows.schema)
    key = _single_partition(metadata.spec(), metadata.schema(), rows)
    if key is None:
        return dataframe_to_data_files(metadata, rows, table.io)
    schema = pyarrow_to_schema(
        rows.schema,
        name_mapping=metadata.schema().name_mapping,
        format_version=metadata.format_version,
    )
    target = target_bytes or property_as_int(
        metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
    )
    write_uuid = uuid.uuid4()
    tasks = (
        WriteTask(write_uuid, n, schema, batches, partition_key=None if key is True else key)
        for n, batches in enumerate(bin_pack_arrow_table(rows, target))
    )
    return list(write_file(table.io, metadata, tasks))


def _single_partition(
    spec: PartitionSpec, schema: Schema, rows: pa.Table
) -> PartitionKey | bool | None:
    """The partition every row falls in (True: unpartitioned), or None if several."""
    if spec.is_unpartitioned():
        return True
    values = []
    for field in spec.fields:
        source = schema.find_field(field.source_id)
        column = rows[schema.find_column_name(field.source_id)]
        transformed = field.transform.pyarrow_transform(source.field_type)(column)
        if transformed.null_count:
            return None
        low, high = pc.min_max(transformed).values()
        if low != high:
            return None
        values.append(PartitionFieldValue(field=field, value=low.as_py()))
    return PartitionKey(field_values=values, partition_spec=spec, schema=schema)
