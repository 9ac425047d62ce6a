"""silver.<name> of a landing-file or database source: the latest typed row per key.

An incremental build reads the rows bronze appended since the last build, keeps the
latest of each key among them (bronze's arrival order: ingestion time, then the file
and row or the watermark) and upserts them: the stored rows of those keys are replaced,
every other key's data files stay. A later arrival always wins, so rows already in silver
never beat new ones. Bronze is read a chunk of data files at a time and reduced to its
latest rows per key as it goes, so memory follows a chunk and the result, in full
rebuilds too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, tzinfo

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
    transaction,
)
from lakehouse.tables.increments import Plan, increment_batches, plan_build
from lakehouse.tables.replace import replace_keys
from lakehouse.transforms.masking import mask_frame
from lakehouse.transforms.typed import (
    arrow_type,
    latest_per_key,
    order_columns,
    typed_columns,
)


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

    @property
    def order_by(self) -> list[str]:
        if isinstance(self.source, DatabaseSource):
            return ["_ingested_at", self.source.watermark]
        return ["_ingested_at", "_file", "_row"]

    @property
    def zone(self) -> tzinfo:
        """Where naive timestamps are wall time: a landing source declares it; a database
        row's text carries its offset (timestamptz) or is UTC."""
        return self.source.dialect.zone if isinstance(self.source, LandingSource) else UTC

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
        # each chunk reduced to its latest row per key as it is read: memory follows a
        # chunk and the result, never bronze
        latest, bronze_rows, order = None, 0, order_columns(self.order_by)
        for chunk in increment_batches(bronze, plan, fields):
            for column in columns.keys() - in_bronze:  # declared before any row carried it
                chunk = chunk.append_column(column, pa.nulls(chunk.num_rows, pa.string()))
            bronze_rows += chunk.num_rows
            reduced = latest_per_key(
                typed_columns(chunk, columns, carry=self.order_by, zone=self.zone),
                source.keys,
                order,
            )
            if latest is not None:
                reduced = latest_per_key(pa.concat_tables([latest, reduced]), source.keys, order)
            latest = reduced
        if latest is None:
            typed = pa.schema(
                [pa.field(c, arrow_type(t)) for c, t in columns.items()]
            ).empty_table()
        else:
            typed = latest.drop_columns(order)
        superseded = bronze_rows - typed.num_rows
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
        rows, withheld_values = withhold(typed, withheld)
        schema = table.schema().as_arrow()
        if source.pii:  # masked on entry to silver, like every other silver table
            unmasked = pii_as_text(rows, source.pii)
            masked = mask_frame(contract_frame(unmasked), source.pii, self.masker)
            rows = pa.Table.from_pandas(masked, schema=schema, preserve_index=False)
        else:
            rows = conform(rows, schema)
        built = TypedBuilt(
            plan=plan,
            table=table,
            bronze_rows=bronze_rows,
            superseded=superseded,
            rows_written=rows.num_rows,
            columns=ColumnChanges(additions, list(extras), withheld, withheld_values),
        )
        properties = plan.properties(self.run_id, self.shape)
        if plan.full:
            with transaction(table) as tx:
                tx.overwrite(rows, snapshot_properties=properties)
        elif plan.appends:
            keys = zip(*(rows[c].to_pylist() for c in source.keys), strict=True)
            replace_keys(table, rows, source.keys, keys, properties)
        return built
