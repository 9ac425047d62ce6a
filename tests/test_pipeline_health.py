"""gold.pipeline_health: runs per job per day from ops.pipeline_runs, built by dbt on
the local target (DuckDB reading the Iceberg tables, the plugin writing gold back), in
the ops group and outside the pipeline job it describes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from lakehouse.tables.run_history import ensure_history_tables, record_run
from resources.iceberg import IcebergCatalogResource

HEALTH = dg.AssetKey(["gold", "pipeline_health"])
DAY = datetime(2026, 11, 2, tzinfo=UTC)


def _run(n: int, job: str, status: str, seconds: float | None) -> dict:
    started = DAY + timedelta(hours=n) if seconds is not None else None
    return {
        "run_id": f"run-{job}-{n}",
        "job": job,
        "status": status,
        "started_at": started,
        "ended_at": (started or DAY + timedelta(hours=n)) + timedelta(seconds=seconds or 0),
        "duration_s": seconds,
        "rows_written": 10 * n,
        "rows_quarantined": 1,
    }


@pytest.mark.timeout(600)
def test_pipeline_health_counts_outcomes_and_durations(lakehouse_env, defs):
    catalog = IcebergCatalogResource().load()
    ensure_history_tables(catalog)
    runs = [_run(n, "lakehouse", "success", float(10 * (n + 1))) for n in range(19)]
    runs += [_run(19, "lakehouse", "failure", 500.0), _run(20, "lakehouse", "canceled", None)]
    runs += [_run(1, "build_gold", "success", 3.0)]
    for run in runs:
        assert record_run(catalog, run, [], datetime.now(UTC))

    graph = defs.resolve_asset_graph()
    assert graph.get(HEALTH).group_name == "ops"
    assert HEALTH not in defs.resolve_job_def("lakehouse").asset_layer.executable_asset_keys
    assert HEALTH not in defs.resolve_job_def("build_gold").asset_layer.executable_asset_keys

    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[HEALTH], raise_on_error=False
        )
    assert result.success
    checks = result.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)

    rows = catalog.load_table("gold.pipeline_health").scan().to_arrow().to_pylist()
    health = {r["job_name"]: r for r in rows}
    assert set(health) == {"lakehouse", "build_gold"}
    day = health["lakehouse"]
    assert str(day["run_date"]) == "2026-11-02"
    assert (day["runs"], day["successes"], day["failures"], day["cancellations"]) == (21, 19, 1, 1)
    assert day["success_rate"] == round(19 / 21, 4)
    durations = sorted([10.0 * (n + 1) for n in range(19)] + [500.0])  # the canceled never ran
    assert day["max_duration_seconds"] == 500.0
    assert day["p50_duration_seconds"] == pytest.approx((durations[9] + durations[10]) / 2)
    p95 = durations[18] + 0.05 * (durations[19] - durations[18])  # linear interpolation
    assert day["p95_duration_seconds"] == pytest.approx(p95, abs=1e-3)
    assert health["build_gold"]["success_rate"] == 1.0
