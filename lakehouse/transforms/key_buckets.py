"""Rows spilled to local disk in buckets by a hash of their key, read back one bucket at a time.

A reduction by key (the latest row of each key) over more rows than a step may hold
needs every row of a key in one place, not every row of the table: hashing the key
sends all rows of a key to the same bucket, so each bucket is reduced on its own and
the union of the buckets' results is the reduction of all rows. Rows keep their order
within a bucket (the order ``add`` received them in), so a reduction that breaks ties by
arrival gives the same answer as over the rows in one table.

The buckets are Arrow IPC files (lz4) in a temporary directory removed on exit: exact
for every Arrow type, and cheap to write and read back.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc


def bucket_count(rows: int, rows_per_bucket: int) -> int:
    """Buckets for about ``rows`` rows, each about ``rows_per_bucket`` (at least one)."""
    return max(1, math.ceil(rows / max(1, rows_per_bucket)))


def key_bucket(rows: pa.Table, keys: tuple[str, ...], buckets: int) -> pa.Array:
    """The bucket of each row: a hash of its key's text (``tables.replace.key_text``),
    modulo ``buckets``. Equal keys hash alike whatever chunk they arrive in: the key
    columns have their declared types in every chunk."""
    from pandas.util import hash_array

    from lakehouse.tables.replace import key_text

    if buckets == 1 or rows.num_rows == 0:
        return pa.array([0] * rows.num_rows, pa.int64())
    text = key_text(rows, keys)
    hashes = hash_array(text.to_numpy(zero_copy_only=False))  # stable across processes
    return pa.array(hashes % buckets, pa.int64())


class KeyBuckets:
    """Rows added in chunks, handed back a bucket at a time (a context manager).

    ``directory``: where the buckets are written (a temporary directory inside it).
    """

    def __init__(self, keys: tuple[str, ...], buckets: int, directory: str | None = None):
        self.keys = keys
        self.buckets = buckets
        self._directory = directory
        self._path: Path | None = None
        self._writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self._schema: pa.Schema | None = None
        self.rows = 0

    def __enter__(self) -> KeyBuckets:
        if self._directory is not None:
            Path(self._directory).mkdir(parents=True, exist_ok=True)
        self._path = Path(tempfile.mkdtemp(prefix="key-buckets-", dir=self._directory))
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._close_writers()
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)

    def add(self, rows: pa.Table) -> None:
        """Append ``rows`` to their buckets (every chunk has the first chunk's schema)."""
        if rows.num_rows == 0:
            return
        if self._schema is None:
            self._schema = rows.schema
        rows = rows.cast(self._schema)
        self.rows += rows.num_rows
        bucket = key_bucket(rows, self.keys, self.buckets)
        # a stable sort by bucket: each bucket's rows stay in the order they came
        order = pc.sort_indices(bucket)
        grouped, sorted_buckets = rows.take(order), bucket.take(order)
        counts = {e["values"]: e["counts"] for e in pc.value_counts(sorted_buckets).to_pylist()}
        start = 0
        for number in sorted(counts):
            self._writer(number).write_table(grouped.slice(start, counts[number]))
            start += counts[number]

    def __iter__(self) -> Iterator[pa.Table]:
        """Each bucket's rows (in the order added), one bucket in memory at a time."""
        self._close_writers()
        assert self._path is not None, "used outside its with block"
        for number in range(self.buckets):
            path = self._path / f"{number}.arrow"
            if not path.exists():
                continue
            with pa.OSFile(str(path)) as source:
                rows = pa.ipc.open_file(source).read_all()
            path.unlink()
            yield rows

    def _writer(self, number: int) -> pa.ipc.RecordBatchFileWriter:
        if number not in self._writers:
            assert self._path is not None and self._schema is not None
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._writers[number] = pa.ipc.new_file(
                str(self._path / f"{number}.arrow"), self._schema, options=options
            )
        return self._writers[number]

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
