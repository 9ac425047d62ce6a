"""Gold: dbt models over silver, built by dagster-dbt; dbt tests become asset checks."""

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

    def get_resource_props(self, manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any]:
        for section in ("nodes", "sources"):
            if unique_id in manifest.get(section, {}):
                return manifest[section][unique_id]
        raise KeyError(unique_id)


translator = LakehouseDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    dagster_dbt_translator=translator,
    project=dbt_project,
    name="gold_dbt_models",
    op_tags=k8s_tags("dbt"),
)
def gold_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    yield from dbt.cli(["build"], context=context).stream()
