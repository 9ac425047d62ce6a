"""silver.<table> (current state) and silver.<table>_history (SCD2) of each CDC source.

The builds (pyiceberg, pyarrow, pandas, pandera; Spark for the Spark engine) are
imported by the step that runs them, not when the code location loads.
"""

from typing import Literal

import dagster as dg
from pydantic import Field

from lakehouse.declarations.sources import (
    CdcSource,
    sources,
)
from lakehouse.defs.silver.builds import SilverBuildConfig, log_build, silver_shape
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    new_columns_result,
    new_columns_spec,
)
from lakehouse.defs.silver.score import quality_metadata
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.quality.contracts import contract_for
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource


class CdcBuildConfig(SilverBuildConfig):
    engine: Literal["auto", "arrow", "spark"] = Field(
        default="auto",
        description="Where the build's per-key work runs: arrow (in the step's process), "
        "spark (Spark's workers, for large changelogs and backfills), or auto: spark from "
        "LAKEHOUSE_SPARK_ENGINE_MIN_CHANGES changes to read (default 500,000). Both write "
        "the same rows to the same tables.",
    )


def cdc_silver_asset(source: CdcSource) -> dg.AssetsDefinition:
    """silver.<name> (current state) and silver.<name>_history (SCD2) from the changelog."""

    bronze_key = ["bronze", source.bronze_name]

    @dg.multi_asset(
        name=f"silver_{source.name}",
        op_tags=k8s_tags("arrow"),
        specs=[
            dg.AssetSpec(
                ["silver", source.name],
                group_name="silver",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Current state of {source.topic}: inserts, updates and deletes "
                "applied in source (LSN) order; unchanged TOAST values carried forward.",
                automation_condition=dg.AutomationCondition.eager(),
                metadata={"lakehouse/keys": list(source.keys)},
            ),
            dg.AssetSpec(
                ["silver", f"{source.name}_history"],
                group_name="silver",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Every version of each {source.name} row (SCD type 2): "
                "valid_from / valid_to / is_current, in LSN order; a delete closes the last "
                "version. Query as of T with valid_from <= T < valid_to (a change superseded "
                "in its own transaction is a zero-length version, never returned).",
                automation_condition=dg.AutomationCondition.eager(),
            ),
            dg.AssetSpec(
                ["quarantine", source.name],
                group_name="quarantine",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Current {source.name} rows that broke a quarantine rule of the "
                f"silver.{source.name} contract (rule and reason per row, PII masked).",
                automation_condition=dg.AutomationCondition.eager(),
            ),
        ],
        check_specs=[new_columns_spec(["silver", source.name])],
    )
    def _asset(
        context: dg.AssetExecutionContext,
        iceberg: IcebergCatalogResource,
        spark: SparkResource,
        config: CdcBuildConfig,
    ):
        from lakehouse.silver.cdc import CdcBuild
        from lakehouse.spark.cdc_build import SPARK, SparkCdcBuild, choose_engine

        freeze_loaded_heap()
        contract = contract_for(f"silver.{source.name}")
        args = (iceberg.load(), source, silver_shape(source, contract), context.run.run_id)
        build = CdcBuild(*args, contract=contract)
        engine, why = choose_engine(config.engine, build.changes_to_read(config.full))
        context.log.info(f"silver.{source.name}: {engine} engine ({why})")
        if engine == SPARK:
            build = SparkCdcBuild(*args, contract=contract, spark=spark.session())
        built = build.run(full=config.full)
        log_build(context, f"silver.{source.name}", built.plan, built.columns)
        applied = built.applied
        engine_metadata = {"lakehouse/engine": engine, "lakehouse/engine_reason": why}
        yield dg.MaterializeResult(
            asset_key=["silver", source.name],
            metadata={
                **table_metadata(built.current),
                **quality_metadata(contract, built.enforced),
                **evolution_metadata(built.columns),
                **built.plan.metadata(),
                **engine_metadata,
                "rows_quarantined": built.rows_quarantined,
                "changes_read": built.changes_read,
                "keys_touched": built.keys_touched,
                "changes_applied": applied.events_applied,
                "duplicates_skipped": applied.duplicates_skipped,
                "toast_values_carried": applied.toast_values_carried,
            },
        )
        yield dg.MaterializeResult(
            asset_key=["silver", f"{source.name}_history"],
            metadata={
                **table_metadata(built.history),
                **built.plan.metadata(),
                **engine_metadata,
                "versions_written": built.versions_written,
            },
        )
        yield dg.MaterializeResult(
            asset_key=["quarantine", source.name],
            metadata={
                **table_metadata(built.quarantine),
                "rows_quarantined": built.rows_quarantined,
            },
        )
        yield new_columns_result(["silver", source.name], source, built.columns)

    return _asset


cdc_silver_assets = [cdc_silver_asset(s) for s in sources().cdc]
