"""The short report printed after a demo run."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from lakehouse.catalog_config import NAMESPACES
from lakehouse.settings import LakehouseSettings
from resources.iceberg import IcebergCatalogResource


def table_counts(settings: LakehouseSettings) -> dict[str, int]:
    catalog = IcebergCatalogResource().load()
    counts: dict[str, int] = {}
    for namespace in NAMESPACES:
        if not catalog.namespace_exists(namespace):
            continue
        for identifier in sorted(catalog.list_tables(namespace)):
            table = catalog.load_table(identifier)
            snapshot = table.current_snapshot()
            total = snapshot.summary["total-records"] if snapshot and snapshot.summary else None
            counts[".".join(identifier)] = int(total) if total is not None else 0
    return counts


@dataclass
class RunTimes:
    """A run's wall time, when its first step started (after the run), and each step's time."""

    wall: float
    first_step: float
    steps: dict[str, float]


def run_times(instance: dg.DagsterInstance, run_id: str) -> RunTimes:
    """The run's times, from its own event log (what the UI's timeline shows)."""
    starts: dict[str, float] = {}
    steps: dict[str, float] = {}
    began = ended = None
    events = dg.DagsterEventType
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == events.RUN_START:
            began = entry.timestamp
        elif kind in (events.RUN_SUCCESS, events.RUN_FAILURE):
            ended = entry.timestamp
        elif kind == events.STEP_START and event.step_key:
            starts[event.step_key] = entry.timestamp
        elif kind in (events.STEP_SUCCESS, events.STEP_FAILURE) and event.step_key in starts:
            steps[event.step_key] = entry.timestamp - starts[event.step_key]
    if began is None or ended is None:
        return RunTimes(sum(steps.values()), 0.0, steps)
    first = min(starts.values(), default=began) - began
    return RunTimes(ended - began, first, steps)


def where_the_time_went(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, top: int = 6
) -> str:
    """A run's wall time and its longest steps."""
    times = run_times(instance, result.run_id)
    steps = times.steps
    longest = sorted(steps.items(), key=lambda item: -item[1])[:top]
    rest = sum(steps.values()) - sum(s for _, s in longest)
    parts = [f"{name} {seconds:.1f} s" for name, seconds in longest]
    if len(steps) > top:
        parts.append(f"{len(steps) - top} more {rest:.1f} s")
    return f"  {result.job_def.name}: {times.wall:.1f} s in {len(steps)} steps ({', '.join(parts)})"


def summarize(
    settings: LakehouseSettings,
    results: list[dg.ExecuteInProcessResult],
    times: list[str] | None = None,
) -> str:
    checks = [c for result in results for c in result.get_asset_check_evaluations()]
    passed = sum(1 for c in checks if c.passed)
    lines = [""]
    for result in results:
        lines.append(
            f"run {result.run_id} ({result.job_def.name}): "
            + ("success" if result.success else "FAILED")
        )
    if times:
        lines += ["time:", *times]
    lines.append(f"asset checks: {passed}/{len(checks)} passed")
    for check in checks:
        if not check.passed:
            lines.append(f"  failed: {check.asset_key.to_user_string()} {check.check_name}")
    lines.append("tables (rows):")
    for name, rows in table_counts(settings).items():
        lines.append(f"  {name:32} {rows:>10,}")
    lines += [
        f"catalog:   {settings.resolved_catalog_uri}",
        f"warehouse: {settings.resolved_warehouse}",
        "UI:        make dev, then open http://127.0.0.1:3000",
    ]
    return "\n".join(lines)
