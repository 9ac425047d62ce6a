"""The Spark engine of a CDC source's silver tables: the same build, its keys spread out.

A CDC build's work is per key (``lakehouse.silver.cdc.apply_partition``): a key's new
changes applied on top of the versions silver holds for it. The Arrow engine does it
in one process with the whole increment in memory. This engine reads the increment
(or, on a full rebuild, the whole changelog) with Spark, spreads changes and stored
versions over partitions by key, and runs the very same function in Spark's Python
workers, so both engines write the same rows. The plan, the schema evolution, the
contract, the quarantine and the commits stay the Arrow build's (``CdcBuild._run``):

- the driver decides the plan (incremental or full, and why) exactly as the Arrow
  engine does, with the same checks (replays, late changes, newer deletes and truncates);
- the driver receives the current rows the build writes (the touched keys', or all of
  them on a full rebuild) and the history versions of an incremental build, enforces
  the contract and commits them with the shared writers (``replace_keys``, one
  transaction per table, the same snapshot properties);
- on a full rebuild the history, the table that grows with every change, is written by
  Spark itself, with the same snapshot properties, and never passes through the driver.

A truncate belongs to every key: the driver hands the few truncates to every partition.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from lakehouse.declarations.sources import CdcSource
from lakehouse.ingest.debezium import UNAVAILABLE, parse_change
from lakehouse.settings import get_settings
from lakehouse.silver.cdc import (
    CHANGELOG_FIELDS,
    Applied,
    CdcBuild,
    ChangeCounts,
    Shaping,
    after_images,
    apply_partition,
    replayed_in,
    stored_key,
)
from lakehouse.tables import evolution
from lakehouse.tables.increments import Plan
from lakehouse.tables.replace import key_text, typed_keys
from lakehouse.transforms.cdc import OrderedChange, late_change, new_keys
from lakehouse.transforms.masking import Masker, pii_key

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

ARROW = "arrow"
SPARK = "spark"
AUTO = "auto"
ENGINES = (AUTO, ARROW, SPARK)


def choose_engine(requested: str, changes: int) -> tuple[str, str]:
    """The engine a build runs on, and why: Spark from ``spark_engine_min_changes``."""
    if requested not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {requested!r}")
    if requested != AUTO:
        return requested, "asked for (config engine)"
    threshold = get_settings().spark_engine_min_changes
    if changes >= threshold:
        return SPARK, f"{changes:,} changelog records to read, at least {threshold:,}"
    return ARROW, f"{changes:,} changelog records to read, fewer than {threshold:,}"


@dataclass
class SparkWork:
    """What the Spark engine read: the plan, the keyed changes and stored versions (one
    frame, partitioned by key), the truncates and newer deletes every partition sees."""

    plan: Plan
    grouped: DataFrame | None
    truncates: list[tuple] = field(default_factory=list)  # (payload, partition, offset)
    earlier: list[tuple] = field(default_factory=list)
    new_values: list[tuple[str, dict]] = field(default_factory=list)  # for schema evolution
    breaks: list[str] = field(default_factory=list)  # breaking source changes found


@dataclass
class SparkCdcBuild(CdcBuild):
    """A CDC build whose per-key work runs in Spark (see the module docstring)."""

    spark: SparkSession = field(kw_only=True)
    catalog_name: str = field(default_factory=lambda: get_settings().catalog_name, kw_only=True)

    # -- reading ---------------------------------------------------------------------

    def _read(self, bronze: Table, history: Table, plan: Plan) -> SparkWork:
        if not plan.full:
            why = replayed_in(plan)
            if why:
                plan = plan.in_full(why)
        work = self._read_plan(bronze, history, plan)
        if work.plan.full and not plan.full:
            return self._read_plan(bronze, history, work.plan)
        return work

    def _read_plan(self, bronze: Table, history: Table, plan: Plan) -> SparkWork:
        from pyspark import StorageLevel
        from pyspark.sql import functions as F

        changes = self._bronze(plan)
        if changes is None:
            return SparkWork(plan, None)
        truncates = [
            (r["payload"], r["_kafka_partition"], r["_kafka_offset"])
            for r in changes.where("op = 't'").collect()
        ]
        if truncates and not plan.full:
            lsn = parse_change(
                truncates[0][0].encode(), self.source.columns, self.source.connector
            ).lsn
            return SparkWork(plan.in_full(f"a truncate at LSN {lsn} empties the table"), None)
        key_schema = self._key_schema(history)
        keyed_schema = pa.schema([*_KEYED, *key_schema])
        keyed = changes.where("op IS NULL OR op <> 't'").mapInArrow(
            _keyed_changes(self.source, self._pii_key(), keyed_schema),
            _spark_schema(keyed_schema),
        )
        if not plan.full:
            keyed = keyed.persist(StorageLevel.MEMORY_AND_DISK)  # read twice below
        grouped = keyed.select(*_KEYED.names, F.lit(None).alias("version"))
        if not plan.full:
            stored = self._stored(history, keyed, key_schema)
            grouped = grouped.unionByName(stored, allowMissingColumns=True)
        grouped = grouped.repartition(self._partitions(), "_key")
        # read by the survey and by the build: decoded once
        work = SparkWork(plan, grouped.persist(StorageLevel.MEMORY_AND_DISK), truncates)
        surveyed = self._survey(work)
        if not plan.full:
            keyed.unpersist()  # the grouped frame holds what the build reads
        if surveyed.grouped is None:
            work.grouped.unpersist()
        return surveyed

    def _bronze(self, plan: Plan) -> DataFrame | None:
        """The plan's changelog rows (tombstones left out), read by Spark."""
        if plan.until is None or (not plan.full and not plan.appends):
            return None
        reader = self.spark.read.format("iceberg")
        if plan.full:
            reader = reader.option("snapshot-id", plan.until.snapshot_id)
        else:
            reader = reader.option("start-snapshot-id", plan.since).option(
                "end-snapshot-id", plan.until.snapshot_id
            )
        return (
            reader.table(self._qualified(self.source.bronze_table))
            .where("op IS NULL OR op <> 'tombstone'")
            .select(*CHANGELOG_FIELDS)
        )

    def _key_schema(self, history: Table) -> pa.Schema:
        """The key columns as the history stores them, named apart from bronze's."""
        stored = _spark_compatible(history.schema().as_arrow())
        return pa.schema([(f"_k_{k}", stored.field(k).type) for k in self.source.keys])

    def _stored(self, history: Table, changes: DataFrame, key_schema: pa.Schema) -> DataFrame:
        """Every stored version of the keys the changes touch, keyed like them.

        The history is joined with the touched keys in Spark (a scan and a hash join:
        no Python per stored row); only the matching versions get their key text.
        """
        from pyspark.sql import functions as F

        snapshot = history.current_snapshot()
        reader = self.spark.read.format("iceberg")
        if snapshot is not None:
            reader = reader.option("snapshot-id", snapshot.snapshot_id)
        versions = reader.table(self._qualified(".".join(history.name()[-2:])))
        wanted = changes.select(*key_schema.names).distinct()
        keys = self.source.keys
        if len(keys) == 1:  # a range the data files' key bounds prune by
            bounds = wanted.agg(F.min(key_schema.names[0]), F.max(key_schema.names[0])).first()
            if bounds[0] is not None:
                versions = versions.where(F.col(keys[0]).between(bounds[0], bounds[1]))
        on = [versions[k].eqNullSafe(wanted[f"_k_{k}"]) for k in keys]
        touched = versions.join(wanted, on, "left_semi")
        schema = _spark_compatible(history.schema().as_arrow())
        return touched.select(F.struct(*schema.names).alias("version")).mapInArrow(
            _keyed_versions(keys, schema),
            _spark_schema(pa.schema([("_key", pa.string()), ("version", pa.struct(schema))])),
        )

    def _survey(self, work: SparkWork) -> SparkWork:
        """One pass over the partitions before the build: the values of columns silver
        does not hold yet and breaking source changes (schema evolution), and for an
        increment the Arrow engine's checks: a late change, or a truncate newer than a
        change of the increment, takes the whole changelog; deletes newer than the
        changes of keys silver holds no open version of join every partition."""
        rows = work.grouped.mapInArrow(
            _survey(self.source, self._pii_key(), self.names[0], work.plan.full),
            _spark_schema(_SURVEY),
        ).collect()
        work.breaks = sorted(r["error"] for r in rows if r["error"])
        work.new_values = [
            (r["position"], pickle.loads(r["values"])) for r in rows if r["values"] is not None
        ]
        if work.plan.full:
            return work
        late = sorted(r["late"] for r in rows if r["late"])
        if late:
            return SparkWork(work.plan.in_full(late[0]), None)
        floors = [r["fresh_floor"] for r in rows if r["fresh_floor"] is not None]
        if not floors:
            return work
        removals = (
            self.spark.read.format("iceberg")
            .option("snapshot-id", work.plan.until.snapshot_id)
            .table(self._qualified(self.source.bronze_table))
            .where(f"op IN ('d', 't') AND lsn > {min(floors)}")
            .select(*CHANGELOG_FIELDS)
            .collect()
        )
        if any(r["op"] == "t" for r in removals):
            return SparkWork(
                work.plan.in_full("a truncate newer than a change of this increment"), None
            )
        work.earlier = [(r["payload"], r["_kafka_partition"], r["_kafka_offset"]) for r in removals]
        return work

    # -- evolving and applying -------------------------------------------------------

    def _additions(self, current: Table, work: SparkWork) -> dict:
        """The survey's partitions checked their changes against the declared columns (a
        breaking change comes back as the Arrow engine's error) and sent the values of
        undeclared columns; their types are inferred from all of them, as in Arrow."""
        if work.breaks:
            raise evolution.SchemaBreak(work.breaks[0])
        return evolution.plan(
            self.names[0], {}, current.schema(), work.new_values, skip=UNAVAILABLE
        )

    def _apply(self, work: SparkWork, shaping: Shaping) -> Applied:
        if work.grouped is None:
            return Applied(
                shaping.current_schema.empty_table(),
                shaping.history_schema.empty_table(),
                set(),
                0,
                ChangeCounts(),
                0,
                0,
            )
        from pyspark import StorageLevel

        blocks = _Blocks(
            _spark_compatible(shaping.current_schema), _spark_compatible(shaping.history_schema)
        )
        results = work.grouped.mapInArrow(
            _applied(self.source, self._pii_key(), shaping, work, blocks),
            _spark_schema(blocks.schema),
        )
        full = work.plan.full
        try:
            if full:  # the history stays in Spark, written from the persisted results
                results = results.persist(StorageLevel.MEMORY_AND_DISK)
                got = _collect_raw(results.where("kind <> 'version'"))
            else:  # an increment's rows: bounded by the keys it touches
                got = _collect_raw(results)
        except BaseException:
            results.unpersist()
            raise
        finally:
            work.grouped.unpersist()
        kind = got.column("kind")
        counts = got.filter(pc.equal(kind, "counts")).column("counts").to_pylist()
        # every partition applied the truncates: count them once
        extra = len(work.truncates) * max(len(counts) - 1, 0)
        total = ChangeCounts(
            sum(r["applied"] for r in counts) - extra,
            sum(r["duplicates"] for r in counts),
            sum(r["carried"] for r in counts),
        )
        keys = got.filter(pc.equal(kind, "key")).column("key").to_pylist()
        rows = _struct_rows(
            got.filter(pc.equal(kind, "current")), "current", shaping.current_schema
        )
        if full:
            self._results = results  # unpersisted once Spark wrote the history
            versions = results.where("kind = 'version'").select("version.*")
        else:
            versions = _struct_rows(
                got.filter(pc.equal(kind, "version")), "version", shaping.history_schema
            )
        return Applied(
            rows,
            versions,
            {pickle.loads(k) for k in keys},
            sum(r["touched"] for r in counts),
            total,
            sum(r["read"] for r in counts) - extra,
            sum(r["versions"] for r in counts),
        )

    def _overwrite_history(self, history: Table, rows: Any, properties: dict[str, str]) -> None:
        """A full rebuild's history, written by Spark with the build's snapshot properties."""
        if isinstance(rows, pa.Table):
            return super()._overwrite_history(history, rows, properties)
        from pyspark.sql import functions as F

        writer = rows.writeTo(self._qualified(".".join(history.name()[-2:])))
        for key, value in properties.items():
            writer = writer.option(f"snapshot-property.{key}", value)
        try:
            writer.overwrite(F.lit(True))
        finally:
            results = getattr(self, "_results", None)
            if results is not None:
                results.unpersist()
                self._results = None
        return None

    # -- helpers ---------------------------------------------------------------------

    def _qualified(self, identifier: str) -> str:
        return f"{self.catalog_name}.{identifier}"

    def _partitions(self) -> int:
        return max(int(self.spark.conf.get("spark.sql.shuffle.partitions", "4")), 1)

    def _pii_key(self) -> bytes | None:
        return pii_key() if self.source.pii else None


# -- what runs in Spark's Python workers (closures, which cloudpickle sends by value) ---

_KEYED = pa.schema(
    [
        ("_key", pa.string()),
        ("op", pa.string()),
        ("payload", pa.string()),
        ("_kafka_partition", pa.int32()),
        ("_kafka_offset", pa.int64()),
    ]
)
_SURVEY = pa.schema(
    [
        ("late", pa.string()),
        ("fresh_floor", pa.int64()),
        ("position", pa.string()),
        ("values", pa.binary()),
        ("error", pa.string()),
    ]
)
_COUNTS = pa.schema(
    [
        ("applied", pa.int64()),
        ("duplicates", pa.int64()),
        ("carried", pa.int64()),
        ("read", pa.int64()),
        ("touched", pa.int64()),
        ("versions", pa.int64()),
    ]
)


def _masker(key: bytes | None) -> Masker:
    return Masker(key) if key is not None else Masker(b"no pii declared")


def _changes(batch: pa.RecordBatch, source: CdcSource) -> list[OrderedChange]:
    return [
        OrderedChange(
            parse_change(payload.encode(), source.columns, source.connector), partition, offset
        )
        for payload, partition, offset in zip(
            batch.column("payload").to_pylist(),
            batch.column("_kafka_partition").to_pylist(),
            batch.column("_kafka_offset").to_pylist(),
            strict=True,
        )
    ]


def _keyed_changes(source: CdcSource, key: bytes | None, schema: pa.Schema):
    def keyed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        masker = _masker(key)
        for batch in batches:
            keys = [
                None if c.event.op == "t" else stored_key(source, masker, c)
                for c in _changes(batch, source)
            ]
            # the key text is tables.replace's, of the keys typed as the history has them
            names = tuple(schema.names[len(_KEYED) :])
            nothing = (None,) * len(names)  # a truncate's: every key's
            typed = typed_keys((nothing if k is None else k for k in keys), names, schema)
            texts = key_text(typed, names)
            has_key = pa.array([k is not None for k in keys], pa.bool_())
            yield pa.RecordBatch.from_arrays(
                [
                    pc.if_else(has_key, texts, "").combine_chunks(),
                    batch.column("op").cast(pa.string()),
                    batch.column("payload").cast(pa.string()),
                    batch.column("_kafka_partition").cast(pa.int32()),
                    batch.column("_kafka_offset").cast(pa.int64()),
                    *(c.combine_chunks() for c in typed.columns),
                ],
                schema=schema,
            )

    return keyed


def _keyed_versions(keys: tuple[str, ...], schema: pa.Schema):
    out = pa.schema([("_key", pa.string()), ("version", pa.struct(schema))])

    def keyed(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            versions = batch.column("version").cast(pa.struct(schema))
            stored = pa.Table.from_arrays([versions.field(k) for k in keys], names=list(keys))
            texts = key_text(stored, keys).combine_chunks()
            yield pa.RecordBatch.from_arrays([texts, versions], schema=out)

    return keyed


def _partition(
    batches: Iterator[pa.RecordBatch], source: CdcSource
) -> tuple[list[OrderedChange], dict[tuple, list[dict[str, Any]]]]:
    """A partition's changes and stored versions (oldest first), as the Arrow engine
    holds them."""
    changes: list[OrderedChange] = []
    stored: dict[tuple, list[dict[str, Any]]] = {}
    for batch in batches:
        table = pa.Table.from_batches([batch])
        is_version = table.column("version").is_valid()
        versions = table.filter(is_version)
        for version in versions.column("version").to_pylist():
            stored.setdefault(tuple(version[k] for k in source.keys), []).append(version)
        rows = table.filter(pc.invert(is_version))
        if rows.num_rows:
            changes += _changes(rows.combine_chunks().to_batches()[0], source)
    for versions in stored.values():
        versions.sort(key=lambda v: (v["valid_from"], v["_lsn"] or -1))
    return changes, stored


def _survey(source: CdcSource, key: bytes | None, table: str, full: bool):
    def survey(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        masker = _masker(key)
        changes, stored = _partition(batches, source)
        head = {"late": None, "fresh_floor": None, "position": None, "values": None}
        rows = []
        try:
            evolution.plan(table, source.columns, None, after_images(changes), skip=UNAVAILABLE)
        except evolution.SchemaBreak as error:
            head["error"] = str(error)
        else:
            for position, image in after_images(changes):
                values = {
                    c: v
                    for c, v in image.items()
                    if c not in source.columns and v is not UNAVAILABLE
                }
                if values:
                    rows.append({"position": position, "values": pickle.dumps(values)})
        if not full:
            in_silver = lambda c: stored_key(source, masker, c)  # noqa: E731
            head["late"] = late_change(changes, source.keys, stored, key=in_silver)
            if not head["late"]:
                _, head["fresh_floor"] = new_keys(changes, source.keys, stored, key=in_silver)
        yield pa.RecordBatch.from_pylist([head, *rows], schema=_SURVEY)

    return survey


class _Blocks:
    """The rows a partition's build returns, in one Arrow schema: its counts, the keys
    it touched, its current rows and its history versions, each kind in its column."""

    def __init__(self, current: pa.Schema, history: pa.Schema) -> None:
        self.current = pa.struct(current)
        self.history = pa.struct(history)
        self.counts = pa.struct(_COUNTS)
        self.schema = pa.schema(
            [
                ("kind", pa.string()),
                ("current", self.current),
                ("version", self.history),
                ("key", pa.binary()),
                ("counts", self.counts),
            ]
        )

    def block(self, kind: str, n: int, column: str, values: pa.Array) -> pa.RecordBatch:
        arrays = {
            "kind": pa.array([kind] * n, pa.string()),
            "current": pa.nulls(n, self.current),
            "version": pa.nulls(n, self.history),
            "key": pa.nulls(n, pa.binary()),
            "counts": pa.nulls(n, self.counts),
        }
        arrays[column] = values
        return pa.RecordBatch.from_arrays(list(arrays.values()), schema=self.schema)

    def rows(self, kind: str, column: str, rows: pa.Table) -> pa.RecordBatch:
        struct = self.current if column == "current" else self.history
        rows = rows.select([f.name for f in struct]).cast(pa.schema(list(struct)))
        values = pa.StructArray.from_arrays(
            [rows.column(f.name).combine_chunks() for f in struct], fields=list(struct)
        )
        return self.block(kind, rows.num_rows, column, values)


def _applied(
    source: CdcSource, key: bytes | None, shaping: Shaping, work: SparkWork, blocks: _Blocks
):
    truncates, earlier, full = work.truncates, work.earlier, work.plan.full

    def applied(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        masker = _masker(key)
        changes, stored = _partition(batches, source)
        if earlier and changes:  # newer deletes of keys silver holds no open version of
            fresh, _ = new_keys(
                changes, source.keys, stored, key=lambda c: stored_key(source, masker, c)
            )
            changes += [
                c
                for c in _changes(_change_batch(earlier), source)
                if stored_key(source, masker, c) in fresh
            ]
        changes += _changes(_change_batch(truncates), source)
        result = apply_partition(source, masker, changes, stored, shaping, full=full)
        counts = {
            "applied": result.counts.events_applied,
            "duplicates": result.counts.duplicates_skipped,
            "carried": result.counts.toast_values_carried,
            "read": result.changes_read,
            "touched": result.keys_touched,
            "versions": result.versions_written,
        }
        yield blocks.block("counts", 1, "counts", pa.array([counts], blocks.counts))
        if result.touched and not full:
            keys = pa.array([pickle.dumps(k) for k in result.touched], pa.binary())
            yield blocks.block("key", len(keys), "key", keys)
        if result.current.num_rows:
            yield blocks.rows("current", "current", result.current)
        if result.history.num_rows:
            yield blocks.rows("version", "version", result.history)

    return applied


def _change_batch(rows: list[tuple]) -> pa.RecordBatch:
    payloads, partitions, offsets = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.RecordBatch.from_arrays(
        [
            pa.array(payloads, pa.string()),
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
        ],
        names=["payload", "_kafka_partition", "_kafka_offset"],
    )


# -- Arrow and Spark types ---------------------------------------------------------------


def _spark_compatible(schema: pa.Schema) -> pa.Schema:
    """``schema`` in the Arrow types Spark exchanges (no large strings, no field ids)."""

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_large_binary(t):
            return pa.binary()
        if pa.types.is_large_list(t) or pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, plain(f.type)) for f in t])
        return t

    return pa.schema([pa.field(f.name, plain(f.type)) for f in schema])


def _spark_schema(schema: pa.Schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def _collect_raw(frame: DataFrame) -> pa.Table:
    """``frame``'s rows on the driver as Arrow, as Spark sends them."""
    if hasattr(frame, "toArrow"):  # pyspark 4
        return frame.toArrow()
    batches = frame._collect_as_arrow()  # pyspark 3.5's only Arrow collect; toPandas uses it
    if batches:
        return pa.Table.from_batches(batches)
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(frame.schema).empty_table()


def _struct_rows(got: pa.Table, column: str, schema: pa.Schema) -> pa.Table:
    """The rows held in ``column``'s structs, in ``schema`` (pyiceberg's types)."""
    if not got.num_rows:
        return schema.empty_table()
    rows = pa.Table.from_struct_array(got.column(column).combine_chunks())
    return rows.select(schema.names).cast(schema)
