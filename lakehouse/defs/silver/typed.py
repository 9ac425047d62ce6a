"""silver.<name> of landing-file and database sources: declared types, latest row per key."""

import dagster as dg
import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.declarations.layouts import (
    iceberg_type,
    typed_silver_layout,
)
from lakehouse.declarations.sources import (
    DatabaseSource,
    LandingSource,
    sources,
)
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    evolve,
    new_columns_result,
    new_columns_spec,
    pii_as_text,
    withhold,
)
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    RUN_ID_KEY,
    conform,
    ensure_table,
    transaction,
    with_commit_retries,
)
from lakehouse.transforms.masking import Masker, mask_frame
from lakehouse.transforms.typed import latest_typed
from resources.iceberg import IcebergCatalogResource


def typed_silver_asset(source: DatabaseSource | LandingSource) -> dg.AssetsDefinition:
    """silver.<name>: the latest version of each key, every declared column typed."""
    if isinstance(source, DatabaseSource):
        order_by = ["_ingested_at", source.watermark]
        origin = f"table {source.table} (read by watermark {source.watermark})"
    else:
        order_by = ["_ingested_at", "_file", "_row"]
        origin = f"{source.format} files under s3://<landing>/{source.key_prefix}"
    layout = typed_silver_layout(source.columns)

    @dg.asset(
        key=["silver", source.name],
        group_name="silver",
        kinds={"iceberg", "pyarrow"},
        deps=[["bronze", source.bronze_name]],
        description=f"Current rows of {origin}: declared types applied, one row per "
        f"{', '.join(source.keys)} (the latest arrival wins).",
        automation_condition=dg.AutomationCondition.eager(),
        metadata={"lakehouse/keys": list(source.keys)},
        op_tags=k8s_tags("arrow"),
        check_specs=[new_columns_spec(["silver", source.name])],
    )
    def _asset(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
        freeze_loaded_heap()
        catalog = iceberg.load()
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        snapshot = bronze.current_snapshot()
        # columns ingestion added to bronze (the source started sending them): typed by
        # the source's own type where it told one, else kept as the text that arrived
        known = set(source.layout.schema.column_names)
        extras = {
            f.name: evolution.text_type(f) for f in bronze.schema().fields if f.name not in known
        }
        columns = {**source.columns, **extras}
        in_bronze = set(bronze.schema().column_names)
        rows = bronze.scan(
            selected_fields=(*(c for c in columns if c in in_bronze), *order_by)
        ).to_arrow()
        for column in columns.keys() - in_bronze:  # declared before any row carried it
            rows = rows.append_column(column, pa.nulls(rows.num_rows, pa.string()))
        result = latest_typed(rows, columns, source.keys, order_by)
        table = ensure_table(catalog, f"silver.{source.name}", layout)
        present = set(table.schema().column_names)
        table = evolve(
            table,
            {c: iceberg_type(t) for c, t in extras.items() if c not in present},
            {
                **{c: iceberg_type(t) for c, t in columns.items()},
                **{c: StringType() for c in source.pii},
            },
        )
        if extras.keys() - present:
            context.log.info(
                f"schema evolved: added {sorted(extras.keys() - present)} to silver.{source.name}"
            )
        withheld = source.withheld(extras)
        silver_rows, withheld_values = withhold(result.silver, withheld)
        schema = table.schema().as_arrow()
        if source.pii:  # masked on entry to silver, like every other silver table
            unmasked = pii_as_text(silver_rows, source.pii)
            masked = mask_frame(unmasked.to_pandas(), source.pii, Masker.from_settings())
            silver_rows = pa.Table.from_pandas(masked, schema=schema, preserve_index=False)
        else:
            silver_rows = conform(silver_rows, schema)
        properties = {
            RUN_ID_KEY: context.run.run_id,
            "lakehouse.bronze-snapshot-id": str(snapshot.snapshot_id if snapshot else ""),
        }

        def write() -> Table:
            table = ensure_table(catalog, f"silver.{source.name}", layout)
            with transaction(table) as tx:
                tx.overwrite(silver_rows, snapshot_properties=properties)
            return table

        table = with_commit_retries(write)
        key = ["silver", source.name]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table),
                "bronze_rows": result.bronze_rows,
                "superseded_versions": result.superseded,
                "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
                **evolution_metadata(
                    {c: iceberg_type(t) for c, t in extras.items() if c not in present},
                    withheld,
                    withheld_values,
                ),
            },
            check_results=[new_columns_result(key, source, list(extras), withheld_values)],
        )

    return _asset


typed_silver_assets = [typed_silver_asset(s) for s in (*sources().database, *sources().landing)]
