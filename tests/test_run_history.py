"""Every finished run is one row of ops.pipeline_runs, whatever its outcome, however
often the sensor sees it; its materializations are rows of ops.asset_materializations.
Real runs on a real (temporary) Dagster instance, real Iceberg tables."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from lakehouse.defs.ops.sensors import (
    record_canceled_runs,
    record_failed_runs,
    record_successful_runs,
)
from lakehouse.orchestration.freshness import BRONZE_WINDOW
from lakehouse.tables.run_history import ASSET_MATERIALIZATIONS, PIPELINE_RUNS
from resources.iceberg import IcebergCatalogResource


# a real bronze asset's key: its freshness check's window applies
@dg.asset(key=["bronze", "clickstream"], partitions_def=dg.StaticPartitionsDefinition(["a"]))
def history_probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(
        metadata={"rows_written": 40, "rows_quarantined": 2, "dagster/row_count": 40}
    )


@dg.asset(key=["silver", "history_probe"], deps=[history_probe])
def scored_probe() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows_written": 38, "lakehouse/quality_score": 0.95})


@dg.asset(key=["silver", "broken_probe"])
def broken_probe() -> None:
    raise ValueError("contract column missing: amount")


ok_job = dg.define_asset_job("history_ok", selection=[history_probe, scored_probe])
failing_job = dg.define_asset_job("history_failing", selection=[broken_probe])
DEFS = dg.Definitions(
    assets=[history_probe, scored_probe, broken_probe], jobs=[ok_job, failing_job]
)


def _status_event(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType):
    (record,) = instance.get_records_for_run(run_id, of_type=kind).records
    return record.event_log_entry.dagster_event


def _evaluate(sensor, instance, run_id: str, kind: dg.DagsterEventType):
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=_status_event(instance, run_id, kind),
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"iceberg": IcebergCatalogResource()},
    )
    return sensor(context)


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_one_history_row_per_run_whatever_its_outcome(lakehouse_env, instance):
    ok = DEFS.resolve_job_def("history_ok").execute_in_process(instance=instance, partition_key="a")
    failed = DEFS.resolve_job_def("history_failing").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert ok.success and not failed.success
    canceled = instance.create_run_for_job(DEFS.resolve_job_def("history_ok"))
    instance.report_run_canceled(canceled)

    for _ in range(2):  # a sensor that sees a run again (lost cursor) writes nothing more
        _evaluate(record_successful_runs, instance, ok.run_id, dg.DagsterEventType.RUN_SUCCESS)
        _evaluate(record_failed_runs, instance, failed.run_id, dg.DagsterEventType.RUN_FAILURE)
        _evaluate(record_canceled_runs, instance, canceled.run_id, dg.DagsterEventType.RUN_CANCELED)

    catalog = IcebergCatalogResource().load()
    runs = {r["run_id"]: r for r in catalog.load_table(PIPELINE_RUNS).scan().to_arrow().to_pylist()}
    assert set(runs) == {ok.run_id, failed.run_id, canceled.run_id}

    done = runs[ok.run_id]
    assert (done["job"], done["status"], done["partition"]) == ("history_ok", "success", "a")
    assert done["assets_materialized"] == 2
    assert done["rows_written"] == 78 and done["rows_quarantined"] == 2
    assert json.loads(done["rows_written_by_asset"]) == {
        "bronze/clickstream": 40,
        "silver/history_probe": 38,
    }
    assert json.loads(done["quality_scores"]) == {"silver/history_probe": 0.95}
    assert done["ended_at"] >= done["started_at"] and done["duration_s"] >= 0
    assert done["error_class"] is None

    broken = runs[failed.run_id]
    assert broken["status"] == "failure"
    assert broken["error_class"] == "ValueError"
    assert "contract column missing: amount" in broken["error_message"]

    stopped = runs[canceled.run_id]
    assert stopped["status"] == "canceled" and stopped["started_at"] is None
    assert stopped["duration_s"] is None

    materializations = catalog.load_table(ASSET_MATERIALIZATIONS).scan().to_arrow().to_pylist()
    assert sorted((m["run_id"], m["asset_key"]) for m in materializations) == [
        (ok.run_id, "bronze/clickstream"),
        (ok.run_id, "silver/history_probe"),
    ]
    bronze = next(m for m in materializations if m["asset_key"] == "bronze/clickstream")
    assert (bronze["partition"], bronze["rows_written"], bronze["row_count"]) == ("a", 40, 40)

    # freshness: nothing was due before bronze/clickstream's first update; a later run
    # was due by that update plus the bronze freshness window
    assert done["freshness_due_by"] is None
    again = DEFS.resolve_job_def("history_ok").execute_in_process(
        instance=instance, partition_key="a"
    )
    _evaluate(record_successful_runs, instance, again.run_id, dg.DagsterEventType.RUN_SUCCESS)
    (later,) = [
        r
        for r in catalog.load_table(PIPELINE_RUNS).scan().to_arrow().to_pylist()
        if r["run_id"] == again.run_id
    ]
    due = bronze["materialized_at"] + BRONZE_WINDOW
    assert abs((later["freshness_due_by"] - due).total_seconds()) < 0.001

    # the ops assets show a materialization per recorded run
    reported = instance.fetch_materializations(dg.AssetKey(["ops", "pipeline_runs"]), limit=10)
    assert len(reported.records) == 4
