"""A plain-data picture of the code location's graph, for ``test_graph_snapshot``.

Everything a reviewer should see change on purpose: asset keys, groups, kinds,
dependencies, partitions, automation, checks and whether they block, jobs and what they
select, schedules, sensors. Run ``python -m tests.graph_snapshot`` to rewrite the
snapshot after an intended change, and review the diff.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SNAPSHOT = Path(__file__).parent / "snapshots" / "graph.json"


def _key(key) -> str:
    return key.to_user_string()


def _partitions(partitions_def) -> str | None:
    if partitions_def is None:
        return None
    start = getattr(partitions_def, "start", None)
    kind = type(partitions_def).__name__
    return f"{kind}(start={start:%Y-%m-%d})" if start is not None else kind


def _profile(assets_def) -> str | None:
    """The Kubernetes resource profile that sizes the asset's step pod."""
    config = (
        (assets_def.op.tags or {}).get("dagster-k8s/config") if assets_def.is_executable else None
    )
    if config is None:
        return None
    return json.loads(config)["pod_template_spec_metadata"]["labels"]["lakehouse/profile"]


def graph_snapshot(defs) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=_key):
        node = graph.get(key)
        assets[_key(key)] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "deps": sorted(_key(k) for k in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "automation": node.automation_condition.get_label()
            if node.automation_condition
            else None,
            "executable": node.is_executable,
            "profile": _profile(node.assets_def),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        spec = graph.get_check_spec(check_key)
        checks[check_key.to_user_string()] = {"blocking": spec.blocking}
    jobs = {}
    for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name):
        if job.name.startswith("__"):
            continue
        selected = job.asset_layer.selected_asset_keys if job.asset_layer else set()
        jobs[job.name] = {
            "assets": sorted(_key(k) for k in selected),
            "partitions": _partitions(job.partitions_def),
            "tags": {k: v for k, v in sorted(job.tags.items())},
        }
    repository = defs.get_repository_def()
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "status": str(s.default_status)}
        for s in sorted(repository.schedule_defs, key=lambda s: s.name)
    }
    sensors = {}
    for sensor in sorted(repository.sensor_defs, key=lambda s: s.name):
        sensors[sensor.name] = {
            "type": type(sensor).__name__,
            "jobs": sorted(t.job_name for t in sensor.targets) if sensor.targets else [],
            "status": str(sensor.default_status),
        }
    return {
        "assets": assets,
        "checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
    }


def render(snapshot: dict[str, Any]) -> str:
    return json.dumps(snapshot, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    from lakehouse.definitions import defs

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else SNAPSHOT
    out.write_text(render(graph_snapshot(defs)))
    print(f"wrote {out}")
