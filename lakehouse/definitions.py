"""The code location: every part under ``lakehouse/defs/``, its resources and its executor.

Dagster's folder loader collects the assets, checks, jobs, schedules and sensors that
each part (``defs/bronze``, ``defs/silver``, ``defs/gold``, ``defs/maintenance``,
``defs/automation``) declares at module level; this module only assembles them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from lakehouse.orchestration.k8s import lakehouse_executor
from resources.dbt import dbt_cli_resource
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.postgres import PostgresResource
from resources.s3 import S3Resource
from resources.spark import SparkResource

PROJECT_ROOT = Path(__file__).resolve().parent.parent

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(project_root=PROJECT_ROOT),
    dg.Definitions(
        # One process per run on a laptop (a process per step costs ~15 s of imports on
        # 2 cores); one pod per step, sized by its asset's profile, under the K8sRunLauncher.
        executor=lakehouse_executor,
        resources={
            "iceberg": IcebergCatalogResource(),
            "kafka": KafkaResource(),
            "postgres": PostgresResource(),
            "s3": S3Resource(),
            "spark": SparkResource(),
            "dbt": dbt_cli_resource(),
        },
    ),
)
