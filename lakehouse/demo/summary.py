"""The short report printed after a demo run."""

from __future__ import annotations

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


def summarize(settings: LakehouseSettings, results: list[dg.ExecuteInProcessResult]) -> str:
    checks = [c for result in results for c in result.get_asset_check_evaluations()]
    passed = sum(1 for c in checks if c.passed)
    lines = [""]
    for result in results:
        lines.append(
            f"run {result.run_id} ({result.job_def.name}): "
            + ("success" if result.success else "FAILED")
        )
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
