"""The code location: every part under ``lakehouse/defs/``, its resources and its executor.

Dagster's folder loader collects the assets, checks, jobs, schedules and sensors that
each part (``defs/bronze``, ``defs/silver``, ``defs/gold``, ``defs/maintenance``,
``defs/automation``) declares at module level; this module only assembles them.

Every run process and step pod imports this module first: what it and ``defs`` import
at module level is paid before any work starts (``bench/load_time.py``,
``tests/test_load_time.py``), so engines are imported where they are used.
"""

from __future__ import annotations

import warnings

import dagster as dg

from lakehouse.orchestration.k8s import lakehouse_executor
from lakehouse.settings import PROJECT_ROOT, get_settings
from resources.alerts import WebhookResource
from resources.dbt import dbt_cli_resource
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.postgres import PostgresResource
from resources.s3 import S3Resource
from resources.spark import SparkResource


def _with_code_references(assets: list) -> list:
    """Each asset links to the file that defines it in the UI (Dagster's code references).

    The function is marked beta in Dagster 1.13; its warning says nothing a user can act on.
    """
    unique = list({id(a): a for a in assets}.values())  # a module may import another's asset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.with_source_code_references(unique))


def _assemble(parts: dg.Definitions, k8s_executor: bool) -> dg.Definitions:
    return dg.Definitions(
        assets=_with_code_references(list(parts.assets or [])),
        asset_checks=parts.asset_checks,
        jobs=parts.jobs,
        schedules=parts.schedules,
        sensors=parts.sensors,
        # One process per run on a laptop (a process per step costs ~15 s of imports on
        # 2 cores); one pod per step, sized by its asset's profile, under the K8sRunLauncher.
        executor=lakehouse_executor(k8s_executor),
        resources={
            "iceberg": IcebergCatalogResource(),
            "kafka": KafkaResource(),
            "postgres": PostgresResource(),
            "s3": S3Resource(),
            "spark": SparkResource(),
            "dbt": dbt_cli_resource(),
            "alerts": WebhookResource(),
        },
    )


def build_definitions(k8s_executor: bool | None = None) -> dg.Definitions:
    """The code location; ``k8s_executor`` defaults to the setting (``LAKEHOUSE_K8S_EXECUTOR``)."""
    if k8s_executor is None:
        k8s_executor = get_settings().k8s_executor
    parts = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT / "lakehouse")
    return _assemble(parts, k8s_executor)


defs = build_definitions()
