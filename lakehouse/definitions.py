"""The code location: assembles assets, checks, jobs, sensors, schedules and resources."""

from __future__ import annotations

import dagster as dg

from lakehouse.assets.bronze import bronze_assets
from lakehouse.assets.gold import gold_daily_dbt_models, gold_dbt_models
from lakehouse.assets.silver import cdc_silver_assets, silver_page_views, typed_silver_assets
from lakehouse.assets.spark import spark_assets
from lakehouse.checks import clickstream_offsets_exactly_once
from lakehouse.jobs import gold_daily_job, gold_job, ingest_jobs, lakehouse_job, spark_job
from lakehouse.k8s import lakehouse_executor
from lakehouse.maintenance import (
    iceberg_maintenance_job,
    iceberg_maintenance_schedule,
    iceberg_snapshot_expiry_job,
    iceberg_snapshot_expiry_schedule,
)
from lakehouse.quality.checks import all_contract_checks
from lakehouse.quality.contracts import silver_contracts
from lakehouse.quality.freshness import freshness_checks, freshness_sensor
from lakehouse.quality.reconcile import reconciliation_checks
from lakehouse.schedules import gold_daily_partition_schedule, gold_daily_schedule
from lakehouse.sensors import ingestion_sensors
from lakehouse.sources import sources
from resources.dbt import dbt_cli_resource
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.postgres import PostgresResource
from resources.s3 import S3Resource
from resources.spark import SparkResource

automation_sensor = dg.AutomationConditionSensorDefinition(
    "lakehouse_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds silver and gold when their inputs change (eager conditions; no retries).",
)

freshness = freshness_checks(sources())

defs = dg.Definitions(
    assets=[
        *bronze_assets(sources()),
        silver_page_views,
        *cdc_silver_assets(sources()),
        *typed_silver_assets(sources()),
        gold_dbt_models,
        gold_daily_dbt_models,
        *spark_assets(sources()),
    ],
    asset_checks=[
        clickstream_offsets_exactly_once,
        *all_contract_checks(silver_contracts()),
        *reconciliation_checks(sources()),
        *freshness,
    ],
    jobs=[
        *ingest_jobs(sources()),
        lakehouse_job,
        gold_job,
        gold_daily_job,
        spark_job,
        iceberg_maintenance_job,
        iceberg_snapshot_expiry_job,
    ],
    sensors=[*ingestion_sensors(sources()), automation_sensor, freshness_sensor(freshness)],
    schedules=[
        gold_daily_schedule,
        gold_daily_partition_schedule,
        iceberg_maintenance_schedule,
        iceberg_snapshot_expiry_schedule,
    ],
    # One process per run on a laptop (a process per step costs ~15 s of imports on 2
    # cores); one pod per step, sized by its asset's profile, under the K8sRunLauncher.
    executor=lakehouse_executor,
    resources={
        "iceberg": IcebergCatalogResource(),
        "kafka": KafkaResource(),
        "postgres": PostgresResource(),
        "s3": S3Resource(),
        "spark": SparkResource(),
        "dbt": dbt_cli_resource(),
    },
)
