"""The dbt CLI resource (dbt-duckdb locally, dbt-trino in production)."""

from __future__ import annotations

from lakehouse.dbt.project import LakehouseDbtCli, dbt_cli


def dbt_cli_resource() -> LakehouseDbtCli:
    """The target is chosen by ``LAKEHOUSE_DBT_TARGET`` inside profiles.yml at run time."""
    return dbt_cli()
