"""How dbt's models, sources and tests appear in Dagster: keys, groups, checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


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
        meta = props.get("config", {}).get("meta") or props.get("meta") or {}
        group = (meta.get("dagster") or {}).get("group") or "gold"
        return spec.replace_attributes(
            key=dg.AssetKey([namespace, props["name"]]),
            group_name=group,
            automation_condition=_automation(group),
        ).merge_attributes(
            kinds={"iceberg"},
            # the Iceberg table, not DuckDB's in-memory scratch relation
            metadata={"dagster/table_name": f"{namespace}.{props['name']}"},
        )

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
            description=spec.description or _describe_test(props),
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking="blocking" in tags,
        )

    def get_resource_props(self, manifest: Mapping[str, Any], unique_id: str) -> Mapping[str, Any]:
        for section in ("nodes", "sources"):
            if unique_id in manifest.get(section, {}):
                return manifest[section][unique_id]
        raise KeyError(unique_id)


OPS_HEALTH_CRON = "10 * * * *"


def _automation(group: str) -> dg.AutomationCondition:
    """Gold follows silver eagerly. A model of the ``ops`` group summarizes run history,
    which every run (its own included) adds to: eager, it would run after each of its own
    runs forever, so it is rebuilt hourly once its sources changed."""
    if group == "ops":
        return dg.AutomationCondition.on_cron(OPS_HEALTH_CRON, "UTC")
    return dg.AutomationCondition.eager()


def _describe_test(props: Mapping[str, Any]) -> str:
    """A readable line for a dbt test that has no description of its own."""
    test = props.get("test_metadata") or {}
    blocking = (
        " Blocking: a failure stops the models downstream."
        if "blocking" in (props.get("tags") or [])
        else ""
    )
    if not test:
        return f"Singular dbt test {props['name']} (dbt_project/tests/).{blocking}"
    kwargs = test.get("kwargs", {})
    column = kwargs.get("column_name")
    where = f"column {column}" if column else "the model"
    extra = ""
    if "values" in kwargs:
        extra = f": {', '.join(map(str, kwargs['values']))}"
    elif "columns" in kwargs:
        extra = f": {', '.join(kwargs['columns'])}"
    return f"dbt test `{test['name']}` on {where}{extra}.{blocking}"


# code references: each gold asset links to its model's .sql file in the UI
translator = LakehouseDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
)
