"""Dagster resources: the only place that knows hosts, ports and credentials.

Every field is optional; an unset field is taken from ``LakehouseSettings`` when
the run starts, so the same code location serves local, CI and production.
Import from the submodules (``resources.iceberg`` ...): importing dbt here would
cost every CLI call seconds.
"""
