"""The daily partitions shared by the Spark silver assets and the daily gold models.

One definition, so a day means the same window (UTC) in silver and gold and a backfill
launched from either covers the same keys. Dagster fixes a partitions definition when
the code location loads, so its first day is read from the settings then
(``LAKEHOUSE_PARTITIONS_START``); changing it takes a reload of the code location.

Today is a partition already (``end_offset=1``): today's events reach the daily gold
models as they arrive (eager automation refreshes the latest partition), rather than
the morning after; a day's partition is simply refreshed again while it fills.
"""

import dagster as dg

from lakehouse.settings import get_settings


def daily_partitions() -> dg.DailyPartitionsDefinition:
    start = get_settings().partitions_start
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


DAILY = daily_partitions()
