"""Dagster resources: the only place that knows hosts, ports and credentials.

Every field is optional; an unset field is taken from ``LakehouseSettings`` when
the run starts, so the same code location serves local, CI and production.
"""

from resources.dbt import dbt_cli_resource, dbt_project
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource
from resources.spark import SparkResource

__all__ = [
    "IcebergCatalogResource",
    "KafkaResource",
    "S3Resource",
    "SparkResource",
    "dbt_cli_resource",
    "dbt_project",
]
