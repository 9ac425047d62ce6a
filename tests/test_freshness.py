"""Freshness: every source and silver table has a check, the sensor evaluates them between
runs, and a source whose sensor stalled (nothing landed in the window) fails its check."""

from __future__ import annotations

import dagster as dg

from lakehouse.defs.bronze.checks import bronze_asset_keys
from lakehouse.defs.silver.checks import silver_asset_keys


def _freshness_keys(defs) -> dict[dg.AssetKey, dg.AssetCheckKey]:
    graph = defs.get_repository_def().asset_graph
    return {k.asset_key: k for k in graph.asset_check_keys if k.name == "freshness_check"}


def test_every_source_and_silver_table_has_a_freshness_check(defs):
    checked = _freshness_keys(defs)
    wanted = [*bronze_asset_keys(), *silver_asset_keys()]
    assert wanted and set(wanted) <= set(checked)
    assert {dg.AssetKey(["bronze", "clickstream"]), dg.AssetKey(["silver", "customers"])} <= set(
        wanted
    )


def test_a_stalled_source_fails_its_freshness_check_and_a_fresh_one_passes(defs):
    keys = _freshness_keys(defs)
    clickstream = keys[dg.AssetKey(["bronze", "clickstream"])]
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        sensor = defs.get_repository_def().get_sensor_def("freshness_checks_sensor")
        request = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        requests = request if isinstance(request, list) else [request]
        requested = {k for r in requests for k in (r.asset_check_keys or [])}
        assert clickstream in requested

        def evaluate() -> dg.AssetCheckEvaluation:
            subset = job.get_subset(asset_check_selection={clickstream}, asset_selection=set())
            result = subset.execute_in_process(instance=instance, raise_on_error=False)
            (evaluation,) = result.get_asset_check_evaluations()
            return evaluation

        stalled = evaluate()  # the sensor never landed anything
        assert not stalled.passed
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=clickstream.asset_key)
        )
        assert evaluate().passed
