"""Run status sensors that record every finished run in ``ops.pipeline_runs``.

One sensor per terminal status (success, failure, cancellation), all writing through
``lakehouse.tables.run_history.record_run``, which writes each run exactly once whatever
the sensors' cursors say. They monitor the runs of this code location and launch nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from lakehouse.defs.ops.assets import asset_materializations, pipeline_runs
from resources.iceberg import IcebergCatalogResource

_ROWS = "rows_written"
_QUARANTINED = "rows_quarantined"
_SCORE = "lakehouse/quality_score"
_ROW_COUNT = "dagster/row_count"


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def _ts(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def _error(
    instance: dg.DagsterInstance, run_id: str, event: dg.DagsterEvent | None
) -> tuple[str | None, str | None]:
    """The error that failed the run: the run's own, else its first failed step's."""
    error = None
    data = event.event_specific_data if event is not None else None
    if data is not None and getattr(data, "error", None) is not None:
        error = data.error
    if error is None:
        failures = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.STEP_FAILURE, limit=1
        ).records
        if failures:
            error = failures[0].event_log_entry.dagster_event.step_failure_data.error
    if error is None:
        return None, None
    # a step's user error wraps the exception that matters
    while error.cause is not None and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    return error.cls_name, error.message.strip()[:4000]


def _freshness_windows() -> dict[str, timedelta]:
    """Asset key -> the window its freshness check allows between updates."""
    from lakehouse.defs.bronze.checks import bronze_asset_keys
    from lakehouse.defs.silver.checks import silver_asset_keys
    from lakehouse.orchestration.freshness import BRONZE_WINDOW, SILVER_WINDOW

    windows = {k.to_user_string(): BRONZE_WINDOW for k in bronze_asset_keys()}
    windows.update({k.to_user_string(): SILVER_WINDOW for k in silver_asset_keys()})
    return windows


def _due_by(
    instance: dg.DagsterInstance, assets: set[str], started: datetime | None
) -> datetime | None:
    """The earliest freshness deadline the run had to meet: for each asset it materialized
    that has a freshness check, its previous materialization plus the check's window."""
    if started is None:
        return None
    windows = _freshness_windows()
    deadlines = []
    for asset in sorted(assets & set(windows)):
        previous = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey.from_user_string(asset),
                before_timestamp=started.timestamp(),
            ),
            limit=1,
        ).records
        if previous:
            deadlines.append(_ts(previous[0].timestamp) + windows[asset])
    return min(deadlines) if deadlines else None


def history_of(
    instance: dg.DagsterInstance, run: dg.DagsterRun, status: str, event: dg.DagsterEvent | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``ops.pipeline_runs`` row and ``ops.asset_materializations`` rows of ``run``."""
    stats = instance.get_run_stats(run.run_id)
    records = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    materializations = []
    for record in records:
        entry = record.event_log_entry
        materialization = entry.asset_materialization
        if materialization is None:
            continue
        metadata = dict(materialization.metadata)
        score = _value(metadata, _SCORE)
        materializations.append(
            {
                "job": run.job_name,
                "asset_key": materialization.asset_key.to_user_string(),
                "partition": materialization.partition,
                "materialized_at": _ts(entry.timestamp),
                "rows_written": _value(metadata, _ROWS),
                "rows_quarantined": _value(metadata, _QUARANTINED),
                "row_count": _value(metadata, _ROW_COUNT),
                "quality_score": float(score) if score is not None else None,
                "snapshot_id": _value(metadata, "snapshot_id"),
            }
        )

    def per_asset(column: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in materializations:
            if m[column] is not None:
                out[m["asset_key"]] = (out.get(m["asset_key"]) or 0) + m[column]
        return out

    written, quarantined = per_asset("rows_written"), per_asset("rows_quarantined")
    scores = {m["asset_key"]: m["quality_score"] for m in materializations if m["quality_score"]}
    error_class, message = (
        _error(instance, run.run_id, event) if status == "failure" else (None,) * 2
    )
    started, ended = _ts(stats.start_time), _ts(stats.end_time) or datetime.now(UTC)
    tags = run.tags
    row = {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": tags.get("dagster/partition"),
        "partition_range_start": tags.get("dagster/asset_partition_range_start"),
        "partition_range_end": tags.get("dagster/asset_partition_range_end"),
        "status": status,
        "started_at": started,
        "ended_at": ended,
        "duration_s": (ended - started).total_seconds() if started else None,
        "assets_materialized": len(materializations),
        "rows_written": sum(written.values()) if written else None,
        "rows_quarantined": sum(quarantined.values()) if quarantined else None,
        "rows_written_by_asset": json.dumps(written, sort_keys=True),
        "rows_quarantined_by_asset": json.dumps(quarantined, sort_keys=True),
        "quality_scores": json.dumps(scores, sort_keys=True),
        "error_class": error_class,
        "error_message": message,
        "freshness_due_by": _due_by(instance, {m["asset_key"] for m in materializations}, started),
    }
    return row, materializations


def record(
    context: dg.RunStatusSensorContext, iceberg: IcebergCatalogResource, status: str
) -> dg.SkipReason:
    """Write the run's history (once) and report the ops assets' materializations."""
    from lakehouse.tables.run_history import record_run

    run = context.dagster_run
    row, materializations = history_of(context.instance, run, status, context.dagster_event)
    written = record_run(iceberg.load(), row, materializations, datetime.now(UTC))
    if not written:
        return dg.SkipReason(f"run {run.run_id} is already recorded")
    for spec, rows in ((asset_materializations, len(materializations)), (pipeline_runs, 1)):
        context.instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=spec.key,
                metadata={"rows_written": rows, "run_id": run.run_id, "job": run.job_name},
            )
        )
    return dg.SkipReason(f"run {run.run_id} ({run.job_name}, {status}) recorded")


def _sensor(status: dg.DagsterRunStatus, label: str, name: str) -> dg.SensorDefinition:
    @dg.run_status_sensor(
        run_status=status,
        name=name,
        description=f"Writes each {label} run to ops.pipeline_runs (and its materializations "
        "to ops.asset_materializations), exactly once per run.",
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
    )
    def _record(context: dg.RunStatusSensorContext, iceberg: IcebergCatalogResource):
        return record(context, iceberg, label)

    return _record


record_successful_runs = _sensor(dg.DagsterRunStatus.SUCCESS, "success", "record_successful_runs")
record_failed_runs = _sensor(dg.DagsterRunStatus.FAILURE, "failure", "record_failed_runs")
record_canceled_runs = _sensor(dg.DagsterRunStatus.CANCELED, "canceled", "record_canceled_runs")
