"""Where the dbt project lives and which dbt runs it (dbt-duckdb locally, dbt-trino in prod)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject

from lakehouse.settings import PROJECT_ROOT

DBT_PROJECT_DIR: Path = PROJECT_ROOT / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_executable() -> str:
    """dbt beside this interpreter (the venv need not be activated), else the one on PATH."""
    beside = Path(sys.executable).parent / "dbt"
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def prepare_manifest() -> None:
    """Parse the dbt project into the manifest the gold assets are built from."""
    cli = DbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()
    )
    cli.cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()


def prepare_if_dev() -> None:
    """Re-parse when a dev server (``dg dev``, ``dagster dev``) loads the code, so edited
    models show on reload.

    ``DbtProject.prepare_if_dev`` does the same with the ``dbt`` found on PATH, which is
    missing when the venv is not activated (``.venv/bin/dg dev``); this uses the dbt
    beside the interpreter.
    """
    if os.getenv("DAGSTER_IS_DEV_CLI"):
        prepare_manifest()
