"""Schedules."""

from __future__ import annotations

import dagster as dg

from lakehouse.defs.gold.jobs import gold_daily_job, gold_job

gold_daily_schedule = dg.ScheduleDefinition(
    name="gold_daily",
    job=gold_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuild gold every morning even if no silver input changed (late corrections).",
)

gold_daily_partition_schedule = dg.build_schedule_from_partitioned_job(
    gold_daily_job,
    hour_of_day=6,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    name="gold_daily_partitions",
    description="Build yesterday's partition of the daily gold models each morning.",
)
