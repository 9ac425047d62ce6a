"""Schedules."""

from __future__ import annotations

import dagster as dg

from lakehouse.jobs import gold_job

gold_daily_schedule = dg.ScheduleDefinition(
    name="gold_daily",
    job=gold_job,
    cron_schedule="0 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuild gold every morning even if no silver input changed (late corrections).",
)
