"""Sensors that watch the whole graph: eager automation and freshness between runs."""

import dagster as dg

from lakehouse.defs.bronze.checks import bronze_freshness_checks
from lakehouse.defs.silver.checks import silver_freshness_checks
from lakehouse.orchestration.freshness import freshness_sensor

automation_sensor = dg.AutomationConditionSensorDefinition(
    "lakehouse_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    # every 10 s (Dagster's default is 30 s): a tick evaluates conditions only, and the
    # silver and gold runs it requests follow an ingestion within seconds
    minimum_interval_seconds=10,
    description="Rebuilds silver and gold when their inputs change (eager conditions; no retries).",
)

freshness_checks_sensor = freshness_sensor([*bronze_freshness_checks, *silver_freshness_checks])
