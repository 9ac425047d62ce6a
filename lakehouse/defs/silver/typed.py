"""silver.<name> of landing-file and database sources: declared types, latest row per key.

The build (pyiceberg, pyarrow) is imported by the step that runs it, not when the code
location loads.
"""

import dagster as dg

from lakehouse.declarations.sources import (
    DatabaseSource,
    LandingSource,
    sources,
)
from lakehouse.defs.silver.builds import SilverBuildConfig, log_build, silver_shape
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    new_columns_result,
    new_columns_spec,
)
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from resources.iceberg import IcebergCatalogResource


def typed_silver_asset(source: DatabaseSource | LandingSource) -> dg.AssetsDefinition:
    """silver.<name>: the latest version of each key, every declared column typed."""
    if isinstance(source, DatabaseSource):
        origin = f"table {source.table} (read by watermark {source.watermark})"
    else:
        origin = f"{source.format} files under s3://<landing>/{source.key_prefix}"

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
    def _asset(
        context: dg.AssetExecutionContext,
        iceberg: IcebergCatalogResource,
        config: SilverBuildConfig,
    ):
        from lakehouse.silver.typed import TypedBuild

        freeze_loaded_heap()
        build = TypedBuild(iceberg.load(), source, silver_shape(source, None), context.run.run_id)
        built = build.run(full=config.full)
        log_build(context, f"silver.{source.name}", built.plan, built.columns)
        key = ["silver", source.name]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(built.table),
                **built.plan.metadata(),
                "rows_written": built.rows_written,
                "bronze_rows": built.bronze_rows,
                "superseded_versions": built.superseded,
                **evolution_metadata(built.columns),
            },
            check_results=[new_columns_result(key, source, built.columns)],
        )

    return _asset


typed_silver_assets = [typed_silver_asset(s) for s in (*sources().database, *sources().landing)]
