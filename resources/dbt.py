"""The dbt CLI resource (dbt-duckdb locally, dbt-trino in production)."""

from __future__ import annotations

from dagster_dbt import DbtCliResource

from lakehouse.dbt.project import DBT_PROJECT_DIR, dbt_executable, dbt_project


def dbt_cli_resource() -> DbtCliResource:
    """The target is chosen by ``LAKEHOUSE_DBT_TARGET`` inside profiles.yml at run time."""
    return DbtCliResource(
        project_dir=dbt_project,
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=dbt_executable(),
    )
