"""Snapshot expiry that never loses a committed source position.

Positions live in snapshot summaries (``commits.py``), so expiring the snapshot
that carries one would make ingestion restart from an older position or from
nothing, and land records twice. Before expiring, a *checkpoint* commit (an empty
append) records every position of the current ancestry in one snapshot: the newest
value for a single position (Kafka offsets, a watermark, a quarantine base/next),
the union for a position that is a set of items (landing files). Only snapshots
older than that checkpoint are expired, so whatever the retention, every position
is still readable by the usual ancestry walk.

pyiceberg 0.12 has no orphan-file removal (a pull request for one, apache/iceberg-python
#3358, was closed unmerged) and its expiry does not delete the files of expired
snapshots. ``remove_orphan_files`` does it the way Iceberg's Spark procedure does:
everything under the table location that no snapshot still in the metadata
references, older than a safety age so that a write in flight (data files written,
commit not yet made) is never touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table
from pyiceberg.table.snapshots import ancestors_of
from pyiceberg.utils.properties import property_as_int

from lakehouse.declarations.layouts import MAX_SNAPSHOT_AGE_MS, MIN_SNAPSHOTS_TO_KEEP
from lakehouse.tables.commits import POSITION_PREFIX, transaction, with_commit_retries

CHECKPOINT_KEY = "lakehouse.defs.maintenance.jobs"
RETRIES_OFF = "commit.retry.num-retries"


@dataclass
class ExpiryResult:
    table: str
    checkpoint_snapshot_id: int | None
    expired: int
    kept: int


_CENTURY_MS = 36_525 * 86_400_000


@dataclass(frozen=True)
class Retention:
    """How much history a table keeps: snapshots younger than ``max_age``, and at
    least the newest ``keep_last`` of its ancestry."""

    max_age: timedelta
    keep_last: int

    @classmethod
    def of(cls, table: Table, default: Retention) -> Retention:
        """The table's own Iceberg expiry properties where it sets them, else ``default``.

        A ValueError names a property that is not a non-negative integer. Ages beyond
        a century (Java's ``Long.MAX_VALUE`` means "never") count as a century, and
        the current snapshot is always kept, as Iceberg does.
        """
        age_ms = property_as_int(table.properties, MAX_SNAPSHOT_AGE_MS)
        keep = property_as_int(table.properties, MIN_SNAPSHOTS_TO_KEEP)
        for key, value in ((MAX_SNAPSHOT_AGE_MS, age_ms), (MIN_SNAPSHOTS_TO_KEEP, keep)):
            if value is not None and value < 0:
                raise ValueError(f"table property {key} is negative: {value}")
        age = None if age_ms is None else timedelta(milliseconds=min(age_ms, _CENTURY_MS))
        return cls(
            default.max_age if age is None else age,
            default.keep_last if keep is None else max(keep, 1),
        )

    def __str__(self) -> str:
        hours = self.max_age / timedelta(hours=1)
        return f"{hours:g} h, newest {self.keep_last}"


def merged_positions(table: Table) -> dict[str, str]:
    """Every position key of the current ancestry with its merged value (JSON text)."""
    newest: dict[str, object] = {}
    unions: dict[str, set] = {}
    for snapshot in ancestors_of(table.current_snapshot(), table.metadata):
        for key, text in (
            snapshot.summary.additional_properties if snapshot.summary else {}
        ).items():
            if not key.startswith(POSITION_PREFIX):
                continue
            value = json.loads(text)
            if isinstance(value, list):
                unions.setdefault(key, set()).update(value)
            else:
                newest.setdefault(key, value)
    merged = {k: json.dumps(v, sort_keys=True) for k, v in newest.items()}
    merged.update({k: json.dumps(sorted(v)) for k, v in unions.items()})
    return merged


def checkpoint_positions(table: Table) -> int | None:
    """Commit the merged positions in one new snapshot (unless the current one has them).

    Returns the snapshot that carries all of them, or None if the table has none.
    The commit must not be rebased by pyiceberg onto a concurrent ingest commit (its
    positions would then be older than that commit's): retries are ours, re-merging.
    """
    if table.properties.get(RETRIES_OFF) != "0":
        with table.transaction() as tx:
            tx.set_properties({RETRIES_OFF: "0"})

    def attempt() -> int | None:
        table.refresh()
        current = table.current_snapshot()
        merged = merged_positions(table)
        if current is None or not merged:
            return None
        summary = current.summary.additional_properties if current.summary else {}
        if all(summary.get(k) == v for k, v in merged.items()):
            return current.snapshot_id
        empty = pa.Table.from_pylist([], schema=table.schema().as_arrow())
        with transaction(table) as tx:
            tx.append(empty, snapshot_properties={**merged, CHECKPOINT_KEY: "position-checkpoint"})
        return table.current_snapshot().snapshot_id

    return with_commit_retries(attempt)


def expire_snapshots(table: Table, older_than: datetime, keep_last: int) -> ExpiryResult:
    """Expire snapshots older than ``older_than`` except the newest ``keep_last`` of the
    ancestry and anything not older than the position checkpoint."""
    name = ".".join(table.name())
    checkpoint = checkpoint_positions(table)

    def expire() -> int:
        # an ingestion commit landing meanwhile fails this one: look again and retry
        table.refresh()
        current = table.current_snapshot()
        if current is None:
            return 0
        ancestry = [s.snapshot_id for s in ancestors_of(current, table.metadata)]
        protected = set(ancestry[: max(keep_last, 1)])
        floor_ms = older_than.timestamp() * 1000
        if checkpoint is not None:
            floor_ms = min(floor_ms, table.metadata.snapshot_by_id(checkpoint).timestamp_ms)
            protected.add(checkpoint)
        doomed = [
            s.snapshot_id
            for s in table.metadata.snapshots
            if s.timestamp_ms < floor_ms and s.snapshot_id not in protected
        ]
        if doomed:
            table.maintenance.expire_snapshots().by_ids(doomed).commit()
        return len(doomed)

    expired = with_commit_retries(expire)
    table.refresh()
    return ExpiryResult(name, checkpoint, expired, len(table.metadata.snapshots))


@dataclass
class OrphanResult:
    table: str
    orphans: int  # unreferenced files older than the cutoff
    orphan_bytes: int
    deleted: int  # 0 in a dry run
    too_young: int  # unreferenced files kept because a write may still commit them
    paths: list[str] = field(default_factory=list)


def referenced_files(table: Table) -> set[str]:
    """Every file the table's metadata reaches: metadata JSON (current and logged),
    each snapshot's manifest list, manifests, data and delete files, statistics."""
    metadata = table.metadata
    files = {table.metadata_location, *(e.metadata_file for e in metadata.metadata_log)}
    files |= {s.statistics_path for s in metadata.statistics}
    files |= {s.statistics_path for s in metadata.partition_statistics}
    manifests = {}
    for snapshot in metadata.snapshots:
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            manifests[manifest.manifest_path] = manifest
    for path, manifest in manifests.items():
        files.add(path)
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            files.add(entry.data_file.file_path)
    return files


def remove_orphan_files(table: Table, older_than: datetime, dry_run: bool = False) -> OrphanResult:
    """Delete files under the table location that no snapshot references and that were
    last modified before ``older_than``; with ``dry_run``, only report them.

    The referenced set is read again just before deleting, so a commit that lands
    while the location is listed protects its files even if they are old.
    """
    name = ".".join(table.name())
    if not isinstance(table.io, PyArrowFileIO):
        raise TypeError(
            f"{name}: orphan-file removal lists the table location with PyArrowFileIO, "
            f"the table uses {type(table.io).__name__}"
        )
    scheme, netloc, root = PyArrowFileIO.parse_location(table.location())
    fs = table.io.fs_by_scheme(scheme, netloc)

    def fs_path(location: str) -> str:
        return PyArrowFileIO.parse_location(location)[2]

    referenced = {fs_path(f) for f in referenced_files(table)}
    listed = fs.get_file_info(pafs.FileSelector(root.rstrip("/"), recursive=True))
    unreferenced = [
        info for info in listed if info.type == pafs.FileType.File and info.path not in referenced
    ]
    cutoff = older_than.timestamp()
    old = [info for info in unreferenced if info.mtime.timestamp() < cutoff]
    too_young = len(unreferenced) - len(old)
    table.refresh()
    still_referenced = {fs_path(f) for f in referenced_files(table)}
    old = [info for info in old if info.path not in still_referenced]
    deleted = 0
    if not dry_run:
        for info in old:
            fs.delete_file(info.path)
            deleted += 1
    return OrphanResult(
        table=name,
        orphans=len(old),
        orphan_bytes=sum(info.size for info in old),
        deleted=deleted,
        too_young=too_young,
        paths=sorted(info.path for info in old),
    )
