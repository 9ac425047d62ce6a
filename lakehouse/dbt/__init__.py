"""The dbt engine: the project, the translator to Dagster assets, the dbt-duckdb Iceberg
plugin, the offline Trino SQL check and column lineage.
"""
