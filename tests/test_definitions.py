"""The code location loads and its graph is the one the UI should show."""

from __future__ import annotations

import dagster as dg


def test_definitions_load_with_layer_groups(defs):
    repo = defs.get_repository_def()
    graph = repo.asset_graph
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups["bronze/clickstream"] == "bronze"
    assert groups["bronze/marketing_spend"] == "bronze"
    assert groups["silver/page_views"] == "silver"
    assert groups["gold/daily_page_views"] == "gold"
    assert {"bronze", "silver", "gold", "quarantine"} <= set(groups.values())


def test_dbt_source_is_the_silver_asset(defs):
    graph = defs.get_repository_def().asset_graph
    gold = graph.get(dg.AssetKey(["gold", "daily_page_views"]))
    assert dg.AssetKey(["silver", "page_views"]) in gold.parent_keys
    silver = graph.get(dg.AssetKey(["silver", "page_views"]))
    assert dg.AssetKey(["bronze", "clickstream"]) in silver.parent_keys


def test_every_layer_has_an_asset_check(defs):
    graph = defs.get_repository_def().asset_graph
    checked = {key.asset_key.path[0] for key in graph.asset_check_keys}
    assert {"bronze", "silver", "gold"} <= checked


def test_sensors_schedules_and_jobs(defs):
    repo = defs.get_repository_def()
    assert {s.name for s in repo.sensor_defs} >= {
        "clickstream_kafka_sensor",
        "marketing_spend_landing_sensor",
        "lakehouse_automation",
    }
    assert {s.name for s in repo.schedule_defs} == {
        "gold_daily",
        "gold_daily_partitions",
        "iceberg_maintenance_daily",
        "iceberg_snapshot_expiry_hourly",
    }
    jobs = ("ingest_clickstream", "ingest_marketing_spend", "lakehouse", "build_gold")
    more = ("build_gold_daily", "ingest_cdc_orders", "ingest_cdc_order_items")
    for name in (*jobs, *more, "iceberg_maintenance", "iceberg_snapshot_expiry"):
        assert repo.get_job(name) is not None
    config = {"ops": {"bronze_clickstream": {"config": {"until_offsets": {"0": 5}}}}}
    assert dg.validate_run_config(repo.get_job("ingest_clickstream"), config)


def test_dagster_definitions_validate_from_the_repo_root(dbt_manifest):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_gold_lineage_reaches_every_silver_input_and_daily_models_are_partitioned(defs):
    graph = defs.resolve_asset_graph()
    parents = {
        name: {k.to_user_string() for k in graph.get(dg.AssetKey(["gold", name])).parent_keys}
        for name in ("daily_revenue", "product_performance", "marketing_roi", "customer_segments")
    }
    assert parents["daily_revenue"] == {"silver/orders", "silver/order_items"}
    assert {"silver/products", "silver/page_views", "silver/orders"} <= parents[
        "product_performance"
    ]
    assert "silver/marketing_spend" in parents["marketing_roi"]
    assert parents["customer_segments"] == {"gold/customer_lifetime_value"}
    daily = graph.get(dg.AssetKey(["gold", "daily_revenue"]))
    assert daily.partitions_def is not None and daily.backfill_policy is not None
    assert graph.get(dg.AssetKey(["gold", "marketing_roi"])).partitions_def is None
    blocking = {
        c.name for c in (graph.get_check_spec(k) for k in graph.asset_check_keys) if c.blocking
    }
    assert "unique_customer_lifetime_value_customer_id" in blocking
    assert "not_null_daily_page_views_view_date" not in blocking
