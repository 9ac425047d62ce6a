"""Dagster resources: the only place that knows hosts, ports and credentials.

Every field is optional; an unset field is taken from ``LakehouseSettings`` when
the run starts, so the same code location serves local, CI and production.
Import from the submodules (``resources.iceberg`` ...): importing dbt here would
cost every CLI call seconds. The code location builds every resource when it loads, so
each imports its client library (pyiceberg, kafka-python, boto3, pyspark) in the method
that makes the client, not at module level (``tests/test_load_time.py``).
"""
