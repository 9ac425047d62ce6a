"""Compaction: a partition's many small data files rewritten as few, in a ``replace`` snapshot.

Ingestion every 30 seconds writes a file or two per batch, thousands a day; every scan
then opens them all. Compaction bin-packs a partition's small files toward the table's
``write.target-file-size-bytes`` (default 128 MiB), the way Spark's
``rewrite_data_files`` does with its ``binpack`` strategy, and packs many small
manifests into few (Spark's ``rewrite_manifests``).

Two engines, the same result (``choose_engine``):
- **Arrow** (pyiceberg, this module): reads each group of small files, writes it again,
  and commits one ``replace`` snapshot per table. Runs when the table's files to rewrite
  total at most ``CompactionPolicy.arrow_max_bytes`` (default 1 GiB: memory holds one
  group of about the target size at a time) and none of them carries delete files
  (pyiceberg cannot read equality deletes).
- **Spark** (``compact_with_spark``): the standard procedures through the Spark resource,
  for larger tables and tables with delete files.

What a compaction must never do, and how it does not:
- lose or duplicate a row: a group's rows are counted from its files' metadata, read,
  counted again and written; the counts must agree or nothing is committed;
- move a committed source position: a ``replace`` carries no position, and positions
  are read by walking the ancestry to the newest snapshot that carries one;
- make an incremental reader re-read data: ``replace`` adds no rows, and every
  incremental reader skips it (``incremental_append_scan``, ``tables.increments``,
  ``quality.scope``), reading build state past it (``commits.last_write``);
- make a writer fail or resurrect what it deleted: the commit is tried once against the
  head it planned on (``commit.retry.num-retries=0``); when a writer wins, the head is
  read again and only the groups whose every input file is still live (and free of
  delete files) are committed, with the files already written. The others' output is
  deleted: a silver build that rewrote the partition meanwhile keeps its rows.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table, TableProperties
from pyiceberg.utils.properties import property_as_int

from lakehouse.tables.commits import transaction, with_commit_retries

if TYPE_CHECKING:
    from pyiceberg.table import FileScanTask

COMPACTION_KEY = "lakehouse.compaction"
COMPACTION_RUN_KEY = "lakehouse.compaction-run-id"
# Spark's rewrite_data_files option names, read as table properties with this prefix
MIN_INPUT_FILES_PROPERTY = "lakehouse.compaction.min-input-files"
ARROW = "arrow"
SPARK = "spark"
NONE = "none"


@dataclass(frozen=True)
class CompactionPolicy:
    """When a partition is compacted, and by which engine.

    ``min_input_files``: a partition is rewritten only when it holds at least this many
    small files (Spark's ``min-input-files``, default 5); a table may set
    ``lakehouse.compaction.min-input-files``. A file is small below ``small_fraction`` of
    the target size (Spark's ``min-file-size-bytes`` default, 75 %). Manifests are packed
    when a snapshot has at least ``min_manifests`` data manifests averaging less than
    half of ``commit.manifest.target-size-bytes``.
    """

    min_input_files: int = 5
    small_fraction: float = 0.75
    min_manifests: int = 16
    arrow_max_bytes: int = 1024**3

    def target_bytes(self, table: Table) -> int:
        return int(
            property_as_int(
                table.properties,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
                TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
            )
        )

    def min_files(self, table: Table) -> int:
        own = property_as_int(table.properties, MIN_INPUT_FILES_PROPERTY)
        return max(2, own if own is not None else self.min_input_files)


@dataclass(frozen=True)
class FileStats:
    """Data files and their bytes in a snapshot (from its summary: no file is read)."""

    files: int
    bytes: int

    @property
    def mean_bytes(self) -> int:
        return self.bytes // self.files if self.files else 0

    @classmethod
    def of(cls, table: Table) -> FileStats:
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot is not None and snapshot.summary else None

        def total(key: str) -> int:
            value = summary[key] if summary is not None else None
            return int(value) if value is not None else 0

        return cls(total("total-data-files"), total("total-files-size"))

    def as_dict(self) -> dict[str, int]:
        return {"files": self.files, "bytes": self.bytes, "mean_file_bytes": self.mean_bytes}


@dataclass(frozen=True)
class Group:
    """Small files of one partition that become about one target-sized file."""

    partition: str
    files: tuple[DataFile, ...]

    @property
    def bytes(self) -> int:
        return sum(f.file_size_in_bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.record_count for f in self.files)


@dataclass
class CompactionPlan:
    table: str
    snapshot_id: int | None
    target_bytes: int
    groups: list[Group] = field(default_factory=list)
    manifests: int = 0
    manifest_bytes: int = 0
    pack_manifests: bool = False
    with_deletes: list[str] = field(default_factory=list)  # partitions Arrow must leave alone

    @property
    def input_bytes(self) -> int:
        return sum(g.bytes for g in self.groups)

    @property
    def empty(self) -> bool:
        return not self.groups and not self.pack_manifests


@dataclass
class CompactionResult:
    """What a compaction did to one table; ``metadata()`` is what the UI shows per table."""

    table: str
    engine: str
    before: FileStats
    after: FileStats
    manifests_before: int = 0
    manifests_after: int = 0
    partitions: int = 0
    files_rewritten: int = 0
    files_added: int = 0
    rows_rewritten: int = 0
    snapshot_id: int | None = None
    commit_attempts: int = 0  # more than one: a writer committed meanwhile and won
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "manifests": {"before": self.manifests_before, "after": self.manifests_after},
            "partitions_compacted": self.partitions,
            "files_rewritten": self.files_rewritten,
            "files_added": self.files_added,
            "rows_rewritten": self.rows_rewritten,
            "snapshot_id": str(self.snapshot_id or ""),
            "commit_attempts": self.commit_attempts,
            "seconds": round(self.seconds, 2),
            **({"notes": self.notes} if self.notes else {}),
        }


def _live_tasks(table: Table) -> list[FileScanTask]:
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    return list(table.scan(snapshot_id=snapshot.snapshot_id).plan_files())


def _partition_label(table: Table, data_file: DataFile) -> str:
    spec = table.metadata.specs()[data_file.spec_id]
    if spec.is_unpartitioned():
        return "(unpartitioned)"
    schema = table.schema()
    values = [
        f"{f.name}="
        + f.transform.to_human_string(schema.find_type(f.source_id), data_file.partition[i])
        for i, f in enumerate(spec.fields)
    ]
    return "/".join(values)


def plan_compaction(table: Table, policy: CompactionPolicy) -> CompactionPlan:
    """The groups of small files to rewrite, partition by partition, and whether the
    manifests need packing. Reads manifests only."""
    snapshot = table.current_snapshot()
    target = policy.target_bytes(table)
    plan = CompactionPlan(
        ".".join(table.name()), snapshot.snapshot_id if snapshot else None, target
    )
    if snapshot is None:
        return plan
    small = int(target * policy.small_fraction)
    min_files = policy.min_files(table)
    partitions: dict[tuple, list[FileScanTask]] = {}
    for task in _live_tasks(table):
        partitions.setdefault((task.file.spec_id, task.file.partition), []).append(task)
    for tasks in partitions.values():
        candidates = [t for t in tasks if t.file.file_size_in_bytes < small]
        if len(candidates) < min_files:
            continue
        label = _partition_label(table, candidates[0].file)
        if any(t.delete_files for t in candidates):
            plan.with_deletes.append(label)
            continue
        plan.groups.extend(
            Group(label, tuple(b)) for b in _bin_pack([t.file for t in candidates], target)
        )
    data = [m for m in snapshot.manifests(table.io) if m.content == ManifestContent.DATA]
    plan.manifests = len(data)
    plan.manifest_bytes = sum(m.manifest_length for m in data)
    manifest_target = int(
        property_as_int(
            table.properties,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES,
            TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
        )
    )
    plan.pack_manifests = (
        len(data) >= policy.min_manifests and plan.manifest_bytes / len(data) < manifest_target / 2
    )
    return plan


def _bin_pack(files: list[DataFile], target: int) -> list[list[DataFile]]:
    """Consecutive bins of at most ``target`` bytes on storage; a bin of one file is left
    as it is (rewriting it alone changes nothing)."""
    bins: list[list[DataFile]] = [[]]
    size = 0
    for data_file in files:
        if bins[-1] and size + data_file.file_size_in_bytes > target:
            bins.append([])
            size = 0
        bins[-1].append(data_file)
        size += data_file.file_size_in_bytes
    return [b for b in bins if len(b) > 1]


def choose_engine(plan: CompactionPlan, policy: CompactionPolicy) -> str:
    """Arrow for what fits one process comfortably and has no delete files, else Spark."""
    if plan.with_deletes or plan.input_bytes > policy.arrow_max_bytes:
        return SPARK
    return NONE if plan.empty else ARROW


def _rewrite_group(table: Table, group: Group, target: int) -> list[DataFile]:
    """Read ``group``'s files and write their rows again as about target-sized files."""
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    from lakehouse.tables.data_files import write_data_files

    reader = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
    rows = reader.to_table([FileScanTask(f) for f in group.files])
    if rows.num_rows != group.rows:
        raise RuntimeError(
            f"{group.partition}: read {rows.num_rows} rows, the files' metadata says {group.rows}"
        )
    # pyiceberg sizes files by Arrow memory: scale by the inputs' compression ratio so
    # that the output approaches the target on storage
    ratio = max(1.0, rows.nbytes / max(group.bytes, 1))
    written = write_data_files(table, rows, int(target * ratio))
    if sum(f.record_count for f in written) != group.rows:
        _delete(table, written)
        raise RuntimeError(f"{group.partition}: wrote a different number of rows than it read")
    return written


def _delete(table: Table, files: Iterable[DataFile]) -> None:
    for data_file in files:
        # left behind it is an orphan, which orphan-file removal reclaims
        with contextlib.suppress(OSError):
            table.io.delete(data_file.file_path)


def compact_table(
    table: Table, policy: CompactionPolicy, run_id: str, plan: CompactionPlan | None = None
) -> CompactionResult:
    """Compact ``table`` with Arrow: rewrite the plan's groups, pack manifests, one commit."""
    began = time.monotonic()
    plan = plan or plan_compaction(table, policy)
    before = FileStats.of(table)
    result = CompactionResult(plan.table, ARROW, before, before, plan.manifests, plan.manifests)
    result.notes += [f"{p}: has delete files, left to Spark" for p in plan.with_deletes]
    if plan.empty:
        result.engine = NONE
        return result
    rewritten = [(g, _rewrite_group(table, g, plan.target_bytes)) for g in plan.groups]
    properties = {
        COMPACTION_KEY: json.dumps(
            {"engine": ARROW, "groups": len(plan.groups), "manifests": plan.pack_manifests}
        ),
        COMPACTION_RUN_KEY: run_id,
    }
    dropped: list[str] = []

    def attempt() -> list[tuple[Group, list[DataFile]]]:
        result.commit_attempts += 1
        table.refresh()
        kept = rewritten
        if table.current_snapshot() is None or table.current_snapshot().snapshot_id != (
            plan.snapshot_id
        ):
            # a writer won: commit only the groups whose inputs are all still live, clean
            live = {t.file.file_path: t for t in _live_tasks(table)}

            def intact(group: Group) -> bool:
                return all(
                    f.file_path in live and not live[f.file_path].delete_files for f in group.files
                )

            kept = [(g, out) for g, out in rewritten if intact(g)]
            for group, _ in rewritten:
                if not intact(group) and group.partition not in dropped:
                    dropped.append(group.partition)
            if not kept and not plan.pack_manifests:
                return kept
        with transaction(table) as tx:
            from lakehouse.tables.pyiceberg_internals import commit_rewrite

            commit_rewrite(
                tx,
                [f for g, _ in kept for f in g.files],
                [f for _, out in kept for f in out],
                properties,
                pack_manifests=plan.pack_manifests,
            )
        return kept

    try:
        committed = with_commit_retries(attempt, retries=20)
    except Exception:
        _delete(table, [f for _, out in rewritten for f in out])
        raise
    committed_ids = {id(g) for g, _ in committed}
    _delete(table, [f for g, out in rewritten if id(g) not in committed_ids for f in out])
    table.refresh()
    result.after = FileStats.of(table)
    if committed or plan.pack_manifests:
        result.snapshot_id = table.current_snapshot().snapshot_id
    result.partitions = len({g.partition for g, _ in committed})
    result.files_rewritten = sum(len(g.files) for g, _ in committed)
    result.files_added = sum(len(out) for _, out in committed)
    result.rows_rewritten = sum(g.rows for g, _ in committed)
    result.manifests_after = _data_manifests(table)
    result.notes += [f"{p}: rewritten by another commit meanwhile, left as is" for p in dropped]
    result.seconds = time.monotonic() - began
    return result


def _data_manifests(table: Table) -> int:
    snapshot = table.current_snapshot()
    if snapshot is None:
        return 0
    return sum(1 for m in snapshot.manifests(table.io) if m.content == ManifestContent.DATA)


def compact_with_spark(
    spark: Any, catalog_name: str, table: Table, policy: CompactionPolicy, plan: CompactionPlan
) -> CompactionResult:
    """Compact ``table`` with Spark's ``rewrite_data_files`` (binpack) and, when the plan
    says so, ``rewrite_manifests``; both commit ``replace`` snapshots.

    The procedure commits once (the table sets ``commit.retry.num-retries=0``); a writer
    that wins meanwhile fails it, and it is run again on the new head, a few times.
    """
    began = time.monotonic()
    before = FileStats.of(table)
    result = CompactionResult(plan.table, SPARK, before, before, plan.manifests, plan.manifests)
    options = {
        "min-input-files": str(policy.min_files(table)),
        "target-file-size-bytes": str(plan.target_bytes),
        "min-file-size-bytes": str(int(plan.target_bytes * policy.small_fraction)),
        # one commit for all file groups: with partial progress, its per-group commits
        # race each other, and with commit.retry.num-retries=0 all but one fail
        "partial-progress.enabled": "false",
    }
    option_map = ", ".join(f"'{k}', '{v}'" for k, v in options.items())
    for n in range(5):
        try:
            row = spark.sql(
                f"CALL {catalog_name}.system.rewrite_data_files("
                f"table => '{plan.table}', options => map({option_map}))"
            ).first()
            break
        except Exception as exc:  # a lost commit surfaces as a Py4J/analysis error
            if "CommitFailedException" not in str(exc) or n == 4:
                raise
            time.sleep(0.5 * 2**n)
    result.files_rewritten = int(row["rewritten_data_files_count"])
    result.files_added = int(row["added_data_files_count"])
    table.refresh()
    if result.files_rewritten and table.current_snapshot() is not None:
        summary = table.current_snapshot().summary
        result.rows_rewritten = int(summary["deleted-records"] or 0)
        result.partitions = int(summary["changed-partition-count"] or 0)
    if plan.pack_manifests:
        spark.sql(f"CALL {catalog_name}.system.rewrite_manifests('{plan.table}')").collect()
    table.refresh()
    result.after = FileStats.of(table)
    result.manifests_after = _data_manifests(table)
    snapshot = table.current_snapshot()
    result.snapshot_id = snapshot.snapshot_id if snapshot else None
    result.seconds = time.monotonic() - began
    return result
