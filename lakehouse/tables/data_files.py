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
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import (
    _check_pyarrow_schema_compatible,
    _dataframe_to_data_files,
    _to_requested_schema,
    bin_pack_arrow_table,
    pyarrow_to_schema,
    write_file,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey, PartitionSpec
from pyiceberg.schema import Schema, sanitize_column_names
from pyiceberg.table import (
    DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE,
    Table,
    TableProperties,
    WriteTask,
)
from pyiceberg.table.locations import load_location_provider
from pyiceberg.typedef import Record
from pyiceberg.utils.config import Config
from pyiceberg.utils.properties import property_as_int

from lakehouse.tables.commits import conform

# Rows are handed to the writer thread once this much Arrow data is pending: large
# enough that a 500k-event batch makes a handful of files, small enough that most
# of the write overlaps the reading.
GROUP_BYTES = 16 * 1024 * 1024
# Rows appended to an open data file at a time (``StreamingDataFiles``): one Parquet
# row group each, and the most left to encode once the source is drained.
ROW_GROUP_BYTES = 4 * 1024 * 1024


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
        self.futures.append(self.executor.submit(self._write, batches))

    def _write(self, batches: list[pa.RecordBatch]) -> list[DataFile]:
        return write_data_files(self.table, pa.Table.from_batches(batches))


class StreamingDataFiles:
    """Data files of ``table`` kept open while a batch is read, a row group at a time.

    ``BackgroundDataFiles`` encodes a whole group when it is full, so the last group
    (up to ``GROUP_BYTES``) is still being written when the source is drained. Here
    a background thread appends each ``row_group_bytes`` of rows to an open Parquet
    file as they come, so finishing costs the last row group and the footers: the
    batch's fixed tail shrinks while the files stay as few as one per partition
    (rolled at the table's target file size). The files are written exactly as
    pyiceberg's own writer writes them (same schema conversion, writer properties
    and column statistics); like ``BackgroundDataFiles`` they are invisible until
    the caller commits them.
    """

    def __init__(self, table: Table, row_group_bytes: int = ROW_GROUP_BYTES) -> None:
        self.table = table
        self.row_group_bytes = row_group_bytes
        self.pending: list[pa.RecordBatch] = []
        self.pending_bytes = 0
        self.rows = 0
        self.futures: list[Future[None]] = []
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-files")
        # touched by the writer thread only
        self._open: dict[tuple, _OpenDataFile] = {}
        self._done: list[DataFile] = []
        self._paths: list[str] = []  # every file started, for discard
        self._write_uuid = uuid.uuid4()

    def add_table(self, rows: pa.Table) -> None:
        """Queue ``rows`` (in the table's layout); full row groups go to the writer."""
        for batch in rows.to_batches():
            if batch.num_rows:
                self.pending.append(batch)
                self.pending_bytes += batch.nbytes
                self.rows += batch.num_rows
        if self.pending_bytes >= self.row_group_bytes:
            self._submit()

    def use_table(self, table: Table) -> None:
        """Rows from now on follow ``table`` (the same table after a schema change):
        what is queued and open is finished under the old schema first."""
        self._submit()
        self.futures.append(self.executor.submit(self._close_all))
        self.table = table

    def flush(self) -> None:
        """Start writing what is queued now, e.g. before other work the caller waits on."""
        self._submit()

    def finish(self) -> list[DataFile]:
        """Write what is queued, close every file, return them; a writer error surfaces here."""
        self._submit()
        self.futures.append(self.executor.submit(self._close_all))
        try:
            for future in self.futures:
                future.result()
            return list(self._done)
        finally:
            self.executor.shutdown(wait=True)

    def discard(self) -> None:
        """Delete the files started so far (best effort): the batch will not be committed."""
        self.pending = []
        self.executor.shutdown(wait=True, cancel_futures=True)
        for open_file in self._open.values():
            with contextlib.suppress(Exception):
                open_file.writer.close()
        for path in self._paths:
            # left behind it is an orphan, never referenced; orphan-file removal reclaims it
            with contextlib.suppress(OSError):
                self.table.io.delete(path)

    def _submit(self) -> None:
        if not self.pending:
            return
        batches, self.pending, self.pending_bytes = self.pending, [], 0
        self.futures.append(self.executor.submit(self._write, self.table, batches))

    def _write(self, table: Table, batches: list[pa.RecordBatch]) -> None:
        rows, key = _prepared(table, pa.Table.from_batches(batches))
        file_format = table.metadata.properties.get(
            TableProperties.WRITE_FILE_FORMAT, TableProperties.WRITE_FILE_FORMAT_DEFAULT
        )
        if key is None or FileFormat(file_format) != FileFormat.PARQUET:
            # rows of several partitions (or not Parquet): pyiceberg's writer splits them
            written = write_data_files(table, rows)
            self._paths += [f.file_path for f in written]
            self._done += written
            return
        partition = () if key is True else tuple(v.value for v in key.field_values)
        open_file = self._open.get(partition)
        if open_file is not None and open_file.full:
            self._done.append(self._open.pop(partition).close())
            open_file = None
        if open_file is None:
            partition_key = None if key is True else key
            open_file = _OpenDataFile(table, partition_key, self._write_uuid, len(self._paths))
            self._open[partition] = open_file
            self._paths.append(open_file.path)
        open_file.write(rows, _arrow_schema(table, rows))

    def _close_all(self) -> None:
        while self._open:
            self._done.append(self._open.popitem()[1].close())


class _OpenDataFile:
    """One Parquet data file being written, as pyiceberg's ``write_file`` writes it
    (sanitized column names, field ids, the table's Parquet properties), but in
    several row groups."""

    def __init__(
        self, table: Table, partition_key: PartitionKey | None, write_uuid: uuid.UUID, n: int
    ) -> None:
        metadata = table.metadata
        self.metadata = metadata
        self.partition_key = partition_key
        self.file_schema = sanitize_column_names(metadata.schema())
        self.model = FileFormatFactory.get(FileFormat.PARQUET)
        task = WriteTask(write_uuid, n, metadata.schema(), [], partition_key=partition_key)
        locations = load_location_provider(metadata.location, metadata.properties)
        self.path = locations.new_data_location(
            data_file_name=task.generate_data_file_filename(self.model.file_extension()),
            partition_key=partition_key,
        )
        self.output = table.io.new_output(self.path)
        self.writer = self.model.create_writer(self.output, self.file_schema, metadata.properties)
        self.target = property_as_int(
            metadata.properties,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        )
        self.downcast = Config().get_bool(DOWNCAST_NS_TIMESTAMP_TO_US_ON_WRITE) or False
        self.written = 0  # Arrow bytes, the measure pyiceberg bin-packs files by

    @property
    def full(self) -> bool:
        return self.written >= self.target

    def write(self, rows: pa.Table, schema: Schema) -> None:
        batches = [
            _to_requested_schema(
                requested_schema=self.file_schema,
                file_schema=schema,
                batch=batch,
                downcast_ns_timestamp_to_us=self.downcast,
                include_field_ids=True,
                format_model=self.model,
            )
            for batch in rows.to_batches()
        ]
        self.writer.write(pa.Table.from_batches(batches))
        self.written += rows.nbytes

    def close(self) -> DataFile:
        statistics = self.writer.close()
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=self.path,
            file_format=FileFormat.PARQUET,
            partition=self.partition_key.partition if self.partition_key else Record(),
            file_size_in_bytes=len(self.output),
            sort_order_id=None,
            spec_id=self.metadata.default_spec_id,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )


def write_data_files(table: Table, rows: pa.Table) -> list[DataFile]:
    """Write ``rows`` as data files of ``table`` without committing them.

    Split from the commit so a caller can write while it does other work (another
    table's commit) and then commit the files with its position
    (``append_files_with_position``). Files written by a run that never commits are orphans:
    invisible to readers, removed by maintenance. A batch whose rows all fall in one
    partition (bronze: one ingestion time per batch) skips pyiceberg's group-by and
    filter copy of the whole batch.
    """
    rows, key = _prepared(table, rows)
    if rows.num_rows == 0:
        return []
    metadata = table.metadata
    if key is None:
        return list(_dataframe_to_data_files(metadata, rows, table.io))
    schema = _arrow_schema(table, rows)
    target = property_as_int(
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


def _prepared(table: Table, rows: pa.Table) -> tuple[pa.Table, PartitionKey | bool | None]:
    """``rows`` in the table's layout, checked as pyiceberg checks them, and their
    one partition (True: unpartitioned; None: several)."""
    rows = conform(rows, table.schema().as_arrow())
    metadata = table.metadata
    _check_pyarrow_schema_compatible(
        metadata.schema(), provided_schema=rows.schema, format_version=metadata.format_version
    )
    if rows.num_rows == 0:
        return rows, True
    return rows, _single_partition(metadata.spec(), metadata.schema(), rows)


def _arrow_schema(table: Table, rows: pa.Table) -> Schema:
    """The Iceberg schema of ``rows`` as pyiceberg's writer reads them (field ids by name)."""
    metadata = table.metadata
    return pyarrow_to_schema(
        rows.schema,
        name_mapping=metadata.schema().name_mapping,
        format_version=metadata.format_version,
    )


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
