"""Gold: dbt models over silver, built by dagster-dbt; dbt tests become asset checks.

The models are split by materialization, as dbt projects grow in production: the
plain models are rebuilt whole, the models tagged ``daily`` are partitioned by day
and built one window at a time (a backfill of many days is one dbt invocation).
"""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from lakehouse.k8s import k8s_tags
from resources.dbt import dbt_project

dbt_project.prepare_if_dev()


class LakehouseDbtTranslator(DagsterDbtTranslator):
    """Asset keys are ``[namespace, table]``, the Iceberg identifier.

    A dbt source ``silver.page_views`` therefore *is* the silver asset, and the UI
    shows one lineage from Kafka to gold.
    """

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey([props["schema"], props["name"]]))
        namespace = props.get("config", {}).get("schema") or "gold"
        return spec.replace_attributes(
            key=dg.AssetKey([namespace, props["name"]]),
            group_name="gold",
            automation_condition=dg.AutomationCondition.eager(),
        ).merge_attributes(kinds={"iceberg"})

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        """dbt tests tagged ``blocking`` stop downstream assets when they fail."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None:
            return None
        props = self.get_resource_props(manifest, unique_id)
        tags = set(props.get("tags", [])) | set(props.get("config", {}).get("tags", []))
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=spec.description,
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking="blocking" in tags,
        )

    def get_resource_props(self, manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any]:
        for section in ("nodes", "sources"):
            if unique_id in manifest.get(section, {}):
                return manifest[section][unique_id]
        raise KeyError(unique_id)


translator = LakehouseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


DAILY = "tag:daily"
# The first day of order data the shop has; earlier partitions would be empty.
GOLD_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="gold_dbt_models",
    exclude=DAILY,
    op_tags=k8s_tags("dbt"),
)
def gold_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="gold_daily_dbt_models",
    select=DAILY,
    partitions_def=GOLD_PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    op_tags=k8s_tags("dbt"),
)
def gold_daily_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """One dbt invocation for the whole partition window (one day or a backfill)."""
    window = context.partition_time_window
    window_vars = {
        "min_date": window.start.date().isoformat(),
        "max_date": window.end.date().isoformat(),
    }
    context.log.info(f"building days [{window_vars['min_date']}, {window_vars['max_date']})")
    yield from dbt.cli(["build", "--vars", json.dumps(window_vars)], context=context).stream()
