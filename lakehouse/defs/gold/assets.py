"""Gold: dbt models over silver, built by dagster-dbt; dbt tests become asset checks.

The models are split by materialization, as dbt projects grow in production: the
plain models are rebuilt whole, the models tagged ``daily`` are partitioned by day
and built one window at a time (a backfill of many days is one dbt invocation). Only the
manifest is read when the code location loads: dbt itself runs in a subprocess, and the
column lineage (sqlglot) is computed by the step.
"""

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_dbt import (
    DbtCliInvocation,
    DbtCliResource,
    dbt_assets,
)

from lakehouse.dbt.project import (
    WINDOW_END_VAR,
    WINDOW_START_VAR,
    LakehouseDbtCli,
    dbt_project,
    prepare_if_dev,
)
from lakehouse.dbt.translator import translator
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.orchestration.partitions import DAILY as DAILY_PARTITIONS
from resources.iceberg import IcebergCatalogResource

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

prepare_if_dev()


def with_iceberg_metadata(
    context: dg.AssetExecutionContext, invocation: DbtCliInvocation, iceberg: IcebergCatalogResource
) -> Iterator:
    """Each built model's materialization gains what its Iceberg table now holds.

    dagster-dbt's own row-count, column and column-lineage fetchers open a second
    DuckDB connection, which cannot see the in-memory session; the Iceberg snapshot is
    the truth anyway: rows, files, bytes, snapshot id, column types (with the dbt
    descriptions) and the column lineage of the compiled SQL (``lakehouse/dbt/lineage.py``).
    """
    catalog = iceberg.load()
    for event in invocation.stream():
        if isinstance(event, dg.Output):
            key = context.asset_key_for_output(event.output_name)
            identifier = ".".join(key.path)
            if catalog.table_exists(identifier):
                metadata = table_metadata(catalog.load_table(identifier))
                described = _descriptions(context.assets_def.specs_by_key[key])
                lineage = _column_lineage(context, invocation, catalog, event.metadata)
                if lineage is not None:
                    metadata["dagster/column_lineage"] = lineage
                    metadata["column_inputs"] = _inputs_table(lineage)
                metadata["dagster/column_schema"] = dg.TableSchema(
                    columns=[
                        dg.TableColumn(
                            name=column.name,
                            type=column.type,
                            description=described.get(column.name),
                            constraints=column.constraints,
                        )
                        for column in metadata["dagster/column_schema"].columns
                    ]
                )
                event = event.with_metadata({**event.metadata, **metadata})
        yield event


def _column_lineage(
    context: dg.AssetExecutionContext,
    invocation: DbtCliInvocation,
    catalog: "Catalog",
    output_metadata: Mapping[str, Any],
) -> dg.TableColumnLineage | None:
    """Lineage is an aid, not a result: SQL sqlglot cannot resolve only logs a warning."""
    from sqlglot.errors import SqlglotError

    from lakehouse.dbt.lineage import column_lineage

    unique_id = getattr(output_metadata.get("unique_id"), "value", None)
    node = invocation.manifest["nodes"].get(unique_id or "")
    if node is None:
        return None
    compiled = invocation.target_path.joinpath(
        "compiled", node["package_name"], node["original_file_path"]
    )

    def columns_of(namespace: str, table: str) -> list[str] | None:
        identifier = f"{namespace}.{table}"
        if not catalog.table_exists(identifier):
            return None
        return [field.name for field in catalog.load_table(identifier).schema().fields]

    try:
        dialect = invocation.manifest["metadata"]["adapter_type"]
        return column_lineage(compiled.read_text(), columns_of, dialect)
    except (OSError, SqlglotError) as error:
        context.log.warning(f"no column lineage for {node['name']}: {error}")
        return None


def _inputs_table(lineage: dg.TableColumnLineage) -> dg.MarkdownMetadataValue:
    """Lineage as a table the open-source UI shows (it draws column lineage only in Dagster+)."""
    lines = ["| column | computed from |", "|---|---|"]
    for column, deps in lineage.deps_by_column.items():
        inputs = ", ".join(f"{'/'.join(d.asset_key.path)}.{d.column_name}" for d in deps)
        lines.append(f"| {column} | {inputs or '(no input column)'} |")
    return dg.MetadataValue.md("\n".join(lines))


def _descriptions(spec: dg.AssetSpec) -> dict[str, str]:
    schema = spec.metadata.get("dagster/column_schema")
    if not isinstance(schema, dg.TableSchema):
        return {}
    return {c.name: c.description for c in schema.columns if c.description}


DAILY = "tag:daily"


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="gold_dbt_models",
    exclude=DAILY,
    op_tags=k8s_tags("dbt"),
)
def gold_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, iceberg: IcebergCatalogResource
):
    if any(
        key.path[0] == "gold" and key.path[-1] == "pipeline_health"
        for key in context.selected_asset_keys
    ):
        from lakehouse.tables.run_history import ensure_history_tables

        # its sources exist (empty) before the sensors have recorded a first run
        ensure_history_tables(iceberg.load())
    yield from with_iceberg_metadata(context, dbt.cli(["build"], context=context), iceberg)


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="gold_daily_dbt_models",
    select=DAILY,
    partitions_def=DAILY_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags=k8s_tags("dbt"),
)
def gold_daily_dbt_models(
    context: dg.AssetExecutionContext, dbt: LakehouseDbtCli, iceberg: IcebergCatalogResource
):
    """One dbt invocation for the whole partition window (one day or a backfill)."""
    window = context.partition_time_window
    start, end = window.start.date().isoformat(), window.end.date().isoformat()
    context.log.info(f"building days [{start}, {end})")
    invocation = dbt.cli(
        ["build"], context=context, env={WINDOW_START_VAR: start, WINDOW_END_VAR: end}
    )
    yield from with_iceberg_metadata(context, invocation, iceberg)
