"""silver.<name> of a landing-file or database source: the latest typed row per key.

An incremental build reads the rows bronze appended since the last build, keeps the
latest of each key among them (bronze's arrival order: ingestion time, then the file
and row or the watermark) and upserts them: the stored rows of those keys are replaced,
every other key's data files stay. A later arrival always wins, so rows already in silver
never beat new ones. Bronze is read a chunk of data files at a time; each chunk is typed,
reduced to its latest rows per key and spilled to local disk in buckets by a hash of the
key (``transforms.key_buckets``). Every row of a key lands in one bucket, so the buckets
are reduced and written one at a time: a full rebuild holds a chunk and a bucket, never
the table, and still commits once (``tables.replace.replace_all``); an incremental one
holds the increment's latest rows and the one stored file it rewrites at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo

import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.declarations.layouts import iceberg_type, typed_silver_layout
from lakehouse.declarations.sources import DatabaseSource, LandingSource
from lakehouse.quality.policy import contract_frame
from lakehouse.silver.build import ColumnChanges, SilverBuild
from lakehouse.silver.columns import evolve, pii_as_text, withhold
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    conform,
    ensure_table,
)
from lakehouse.tables.increments import (
    ROWS_PER_CHUNK,
    Plan,
    increment_batches,
    plan_build,
    rows_to_read,
)
from lakehouse.tables.replace import replace_all, replace_keys
from lakehouse.transforms.key_buckets import KeyBuckets, bucket_count
from lakehouse.transforms.masking import mask_frame
from lakehouse.transforms.typed import (
    latest_per_key,
    order_columns,
    typed_columns,
)

# a bucket is reduced, masked and written at once: writing 500,000 rows of TPC-H
# lineitem as Parquet took about 600 MB; half of that leaves room in a 1 GB step
ROWS_PER_BUCKET = 250_000


@dataclass
class TypedBuilt:
    plan: Plan
    table: Table
    bronze_rows: int = 0
    superseded: int = 0
    rows_written: int = 0
    columns: ColumnChanges = field(default_factory=ColumnChanges)


@dataclass
class TypedBuild(SilverBuild):
    """One build of a landing or database source's silver table."""

    source: DatabaseSource | LandingSource
    # rows per spill bucket: a bucket's rows, typed, are what a build holds at most
    rows_per_bucket: int = field(default=ROWS_PER_BUCKET, kw_only=True)
    rows_per_chunk: int = field(default=ROWS_PER_CHUNK, kw_only=True)  # bronze rows read at once
    spill_directory: str | None = field(default=None, kw_only=True)  # None: the temp dir

    @property
    def order_by(self) -> list[str]:
        if isinstance(self.source, DatabaseSource):
            return ["_ingested_at", self.source.watermark]
        return ["_ingested_at", "_file", "_row"]

    @property
    def zone(self) -> tzinfo:
        return self.source.zone

    def _run(self, full: bool) -> TypedBuilt:
        source = self.source
        name = f"silver.{source.name}"
        layout = typed_silver_layout(source.columns)
        bronze = self.catalog.load_table(source.bronze_table)
        table = ensure_table(self.catalog, name, layout)
        plan = plan_build(table, bronze, self.shape, full=full)
        # columns ingestion added to bronze (the source started sending them): typed by
        # the source's own type where it told one, else kept as the text that arrived
        known = set(source.layout.schema.column_names)
        extras = {
            f.name: evolution.text_type(f) for f in bronze.schema().fields if f.name not in known
        }
        columns = {**source.columns, **extras}
        in_bronze = set(bronze.schema().column_names)
        fields = (*(c for c in columns if c in in_bronze), *self.order_by)
        # each chunk typed and reduced to its latest row per key as it is read, then
        # spilled to buckets by key: a key's rows all meet in one bucket, so reducing one
        # bucket at a time is reducing all rows, and memory follows a chunk and a bucket
        # (never bronze, nor silver on a full rebuild)
        order = order_columns(self.order_by)
        buckets = bucket_count(rows_to_read(bronze, plan), self.rows_per_bucket)
        bronze_rows = 0
        with KeyBuckets(source.keys, buckets, self.spill_directory) as spilled:
            for chunk in increment_batches(
                bronze, plan, fields, rows_per_chunk=self.rows_per_chunk
            ):
                for column in columns.keys() - in_bronze:  # declared before any row carried it
                    chunk = chunk.append_column(column, pa.nulls(chunk.num_rows, pa.string()))
                bronze_rows += chunk.num_rows
                typed = typed_columns(chunk, columns, carry=self.order_by, zone=self.zone)
                spilled.add(latest_per_key(typed, source.keys, order))
            present = set(table.schema().column_names)
            additions = {c: iceberg_type(t) for c, t in extras.items() if c not in present}
            table = evolve(
                table,
                additions,
                {
                    **{c: iceberg_type(t) for c, t in columns.items()},
                    **{c: StringType() for c in source.pii},
                },
            )
            withheld = source.withheld(extras)
            built = TypedBuilt(
                plan=plan,
                table=table,
                bronze_rows=bronze_rows,
                columns=ColumnChanges(
                    additions, list(extras), withheld, {c: 0 for c in withheld if c in columns}
                ),
            )
            schema = table.schema().as_arrow()
            parts = (
                self._silver_rows(
                    latest_per_key(bucket, source.keys, order).drop_columns(order), schema, built
                )
                for bucket in spilled
            )
            properties = plan.properties(self.run_id, self.shape)
            if plan.full:
                replace_all(table, parts, properties)
            elif plan.appends:
                rows = pa.concat_tables([*parts, schema.empty_table()])
                replace_keys(table, rows, source.keys, rows.select(source.keys), properties)
        built.superseded = bronze_rows - built.rows_written
        return built

    def _silver_rows(self, typed: pa.Table, schema: pa.Schema, built: TypedBuilt) -> pa.Table:
        """One bucket's latest rows as stored: unclassified columns withheld, PII masked."""
        rows, withheld_values = withhold(typed, built.columns.withheld)
        for column, count in withheld_values.items():
            built.columns.withheld_values[column] += count
        if self.source.pii:  # masked on entry to silver, like every other silver table
            unmasked = pii_as_text(rows, self.source.pii)
            masked = mask_frame(contract_frame(unmasked), self.source.pii, self.masker)
            rows = pa.Table.from_pandas(masked, schema=schema, preserve_index=False)
        else:
            rows = conform(rows, schema)
        built.rows_written += rows.num_rows
        return rows
