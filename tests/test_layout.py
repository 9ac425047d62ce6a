"""The house's layout holds: Dagster's `dg` reads the project, the layers stay in order, and
pyiceberg's private API is used from one module only."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from lakehouse.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
INTERNALS = PROJECT_ROOT / "lakehouse" / "tables" / "pyiceberg_internals.py"


def test_dg_loads_the_project_layout(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    result = subprocess.run(
        [str(BIN / "dg"), "check", "defs"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_the_import_layers_hold():
    result = subprocess.run(
        [str(BIN / "lint-imports")], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def _private_pyiceberg_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pyiceberg"):
            uses += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
        if isinstance(node, ast.Import):
            uses += [
                a.name for a in node.names if any(p.startswith("_") for p in a.name.split("."))
            ]
    return uses


def test_private_pyiceberg_api_is_used_from_one_module_only():
    offenders = {}
    for root in ("lakehouse", "resources"):
        for path in (PROJECT_ROOT / root).rglob("*.py"):
            if path != INTERNALS and (uses := _private_pyiceberg_uses(path)):
                offenders[str(path.relative_to(PROJECT_ROOT))] = uses
    assert not offenders, f"use lakehouse/tables/pyiceberg_internals.py instead: {offenders}"
    assert _private_pyiceberg_uses(INTERNALS)  # the rule above can see such an import
