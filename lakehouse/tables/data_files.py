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
import itertools
import uuid
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from lakehouse.tables.commits import conform

# Rows are handed to the writer thread once this much Arrow data is pending: large
# enough that a 500k-event batch makes a handful of files, small enough that most
# of the write overlaps the reading.
GROUP_BYTES = 16 * 1024 * 1024


class BackgroundDataFiles:
    """Writes record batches to data files of ``table`` in a background thread."""

    def __init__(self, table: Table, group_bytes: int = GROUP_BYTES) -> None:
        self.table = table
        self.metadata = table.metadata
        self.group_bytes = group_bytes
        self.schema = table.schema().as_arrow()
        self.write_uuid = uuid.uuid4()
        self.counter = itertools.count(0)
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
        rows = conform(pa.Table.from_batches(batches), self.schema)
        return list(
            _dataframe_to_data_files(
                table_metadata=self.metadata,
                df=rows,
                io=self.table.io,
                write_uuid=self.write_uuid,
                counter=self.counter,
            )
        )
