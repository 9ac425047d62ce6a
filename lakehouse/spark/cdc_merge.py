"""A Debezium changelog applied incrementally with Spark's ``MERGE INTO``.

The pyiceberg path (``lakehouse.transforms.cdc.apply_changes``) recomputes a table's
state from the whole changelog, which is right until the backlog is large. This
path folds only the changes of a range of ingestion days per key and merges the
result into the current state, with the same rules, so both give the same table:
- changes are ordered by (LSN, ts_ms, Kafka partition, offset); a change never
  overwrites a row whose ``_lsn`` is newer (late and replayed events are harmless);
- within the batch, a key's last change decides: a delete deletes, an upsert writes
  the newest available value of each column; an unchanged TOAST column keeps the
  value the row already has (or null after a delete, as in the pyiceberg path);
- an upsert superseded by a later delete or truncate anywhere in the changelog
  (read from bronze, where ``op`` is a column) is dropped, so re-running an old day
  never resurrects a deleted row;
- a truncate in the batch deletes every row older than it before the merge.
Decoding reuses ``lakehouse.ingest.debezium.parse_change`` in Spark's Python workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from lakehouse.declarations.layouts import cdc_silver_layouts

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

UPSERTS = ("c", "u", "r")


def change_arrow_schema(columns: dict[str, str]) -> pa.Schema:
    """Decoded changes: the declared columns typed, plus op, order and TOAST markers."""
    current, _ = cdc_silver_layouts(columns)
    typed = [f for f in current.arrow_schema() if f.name in columns]
    return pa.schema(
        [
            *typed,
            ("_op", pa.string()),
            ("_lsn", pa.int64()),
            ("_ts_ms", pa.int64()),
            ("_partition", pa.int32()),
            ("_offset", pa.int64()),
            ("_unavailable", pa.list_(pa.string())),
        ]
    )


def decode_changes(
    bronze: DataFrame,
    columns: dict[str, str],
    pii: Mapping[str, str] | None = None,
    pii_key: bytes | None = None,
) -> DataFrame:
    """Bronze changelog rows (op, payload, _kafka_partition, _kafka_offset) decoded.

    Declared PII columns are masked in the same Python worker that decodes them, as
    the pyiceberg path masks them on entry to silver: raw values never reach a
    Spark-written silver table.
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    schema = change_arrow_schema(columns)
    declared = dict(columns)
    policies = dict(pii or {})
    if policies and pii_key is None:
        raise ValueError("PII columns are declared but no key was given to mask them")

    def decode(batches):
        from lakehouse.ingest.debezium import UNAVAILABLE, parse_change
        from lakehouse.transforms.masking import Masker

        masker = Masker(pii_key) if policies else None

        for batch in batches:
            rows = []
            for payload, partition, offset in zip(
                batch.column("payload").to_pylist(),
                batch.column("_kafka_partition").to_pylist(),
                batch.column("_kafka_offset").to_pylist(),
                strict=True,
            ):
                change = parse_change(payload.encode() if payload else None, declared)
                if change is None:
                    continue
                image = (change.after if change.op in UPSERTS else change.before) or {}
                row = {c: (None if v is UNAVAILABLE else v) for c, v in image.items()}
                if masker is not None:
                    row = {
                        c: masker.mask(v, policies[c]) if c in policies and v is not None else v
                        for c, v in row.items()
                    }
                row.update(
                    _op=change.op,
                    _lsn=change.lsn,
                    _ts_ms=change.ts_ms,
                    _partition=partition,
                    _offset=offset,
                    _unavailable=[c for c, v in image.items() if v is UNAVAILABLE],
                )
                rows.append({name: row.get(name) for name in schema.names})
            yield pa.RecordBatch.from_pylist(rows, schema=schema)

    picked = bronze.where("op IS NOT NULL AND op <> 'tombstone'").select(
        "payload", "_kafka_partition", "_kafka_offset"
    )
    return picked.mapInArrow(decode, from_arrow_schema(schema))


@dataclass
class MergeBatch:
    changes: DataFrame  # one row per key: final op, values, carry flags
    truncate_lsn: int | None  # a truncate in the batch: rows older than it are deleted


def _order():
    from pyspark.sql import functions as F

    return F.struct(
        F.coalesce("_lsn", F.lit(-1)).alias("lsn"),
        F.coalesce("_ts_ms", F.lit(0)).alias("ts"),
        F.col("_partition").alias("partition"),
        F.col("_offset").alias("offset"),
    )


def _order_literal(order) -> Column:
    from pyspark.sql import functions as F

    return F.struct(
        F.lit(order["lsn"]).cast("long").alias("lsn"),
        F.lit(order["ts"]).cast("long").alias("ts"),
        F.lit(order["partition"]).cast("int").alias("partition"),
        F.lit(order["offset"]).cast("long").alias("offset"),
    )


def fold_changes(
    batch: DataFrame, resets: DataFrame, columns: dict[str, str], keys: tuple[str, ...]
) -> MergeBatch:
    """The batch folded to one change per key; ``resets`` are the changelog's deletes and
    truncates (all days), which supersede older upserts."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    batch = batch.withColumn("_ord", _order())
    resets = resets.withColumn("_ord", _order())
    truncate_all = resets.where("_op = 't'").agg(F.max("_ord").alias("o")).first()["o"]
    truncate_batch = batch.where("_op = 't'").agg(F.max("_ord").alias("o")).first()["o"]
    rows = batch.where("_op <> 't'")
    if truncate_all is not None:
        rows = rows.where(F.col("_ord") > _order_literal(truncate_all))
    per_key = Window.partitionBy(*keys)
    rows = rows.withColumn(
        "_last_delete", F.max(F.when(F.col("_op") == "d", F.col("_ord"))).over(per_key)
    )
    live = F.col("_op").isin(*UPSERTS) & (
        F.col("_last_delete").isNull() | (F.col("_ord") > F.col("_last_delete"))
    )
    values = [c for c in columns if c not in keys]
    aggregates = [
        F.max_by("_op", "_ord").alias("_op"),
        F.max("_ord").alias("_final"),
        F.max("_last_delete").alias("_last_delete"),
    ]
    for column in values:
        available = live & ~F.array_contains("_unavailable", column)
        aggregates += [
            F.max_by(column, F.when(available, F.col("_ord"))).alias(column),
            F.count(F.when(available, 1)).alias(f"{column}__n"),
        ]
    folded = rows.groupBy(*keys).agg(*aggregates)
    deleted_later = resets.where("_op = 'd'").groupBy(*keys).agg(F.max("_ord").alias("_deleted"))
    folded = folded.join(deleted_later, on=list(keys), how="left")
    superseded = (
        (F.col("_op") != "d")
        & F.col("_deleted").isNotNull()
        & (F.col("_deleted") > F.col("_final"))
    )
    folded = folded.where(~superseded)
    out = [
        *keys,
        "_op",
        F.col("_final.lsn").alias("_lsn"),
        F.timestamp_millis(F.col("_final.ts")).alias("_source_ts"),
    ]
    for column in values:
        # no value in the batch and no delete before it: keep what the row has
        carry = (F.col(f"{column}__n") == 0) & F.col("_last_delete").isNull()
        out += [column, carry.alias(f"{column}__carry")]
    return MergeBatch(
        folded.select(*out), None if truncate_batch is None else int(truncate_batch["lsn"])
    )


def merge_into(
    spark: SparkSession,
    target: str,
    merge: MergeBatch,
    columns: dict[str, str],
    keys: tuple[str, ...],
) -> None:
    """Apply the folded batch to ``target`` (its columns: declared + _lsn, _source_ts)."""
    if merge.truncate_lsn is not None:
        spark.sql(f"DELETE FROM {target} WHERE coalesce(_lsn, -1) < {merge.truncate_lsn}")
    view = f"_cdc_batch_{abs(hash(target))}"
    merge.changes.createOrReplaceTempView(view)
    values = [c for c in columns if c not in keys]
    on = " AND ".join(f"t.`{k}` <=> s.`{k}`" for k in keys)
    newer = "coalesce(s._lsn, -1) >= coalesce(t._lsn, -1)"
    sets = ", ".join(
        [f"t.`{c}` = CASE WHEN s.`{c}__carry` THEN t.`{c}` ELSE s.`{c}` END" for c in values]
        + ["t._lsn = s._lsn", "t._source_ts = s._source_ts"]
    )
    names = [*keys, *values, "_lsn", "_source_ts"]
    insert_columns = ", ".join(f"`{c}`" for c in names)
    insert_values = ", ".join(f"s.`{c}`" for c in names)
    spark.sql(
        f"""
        MERGE INTO {target} t
        USING {view} s
        ON {on}
        WHEN MATCHED AND s._op = 'd' AND {newer} THEN DELETE
        WHEN MATCHED AND s._op <> 'd' AND {newer} THEN UPDATE SET {sets}
        WHEN NOT MATCHED AND s._op <> 'd' THEN INSERT ({insert_columns}) VALUES ({insert_values})
        """
    )
    spark.catalog.dropTempView(view)
