"""Freshness: every source's bronze table and every silver table must have been updated
recently, or its freshness check fails.

A stalled sensor (broker unreachable, a crash loop, a paused sensor) lands nothing,
so bronze stops updating and its check fails within the window; silver tables
follow one hop later. The checks run inside the runs that materialize the assets and,
between runs, from ``freshness_checks_sensor``, so a quiet source is noticed even
when no run happens. The windows are generous for the demo's cadence; tighten them
per source when the source's expected arrival rate is known.
"""

from datetime import timedelta

import dagster as dg

from lakehouse.sources import Sources

BRONZE_WINDOW = timedelta(hours=2)
SILVER_WINDOW = timedelta(hours=3)


def source_asset_keys(sources: Sources) -> list[dg.AssetKey]:
    every = (*sources.kafka, *sources.cdc, *sources.database, *sources.landing)
    return [dg.AssetKey(["bronze", s.bronze_name]) for s in every]


def silver_asset_keys(sources: Sources) -> list[dg.AssetKey]:
    names = ["page_views"]
    for cdc in sources.cdc:
        names += [cdc.name, f"{cdc.name}_history"]
    names += [s.name for s in (*sources.database, *sources.landing)]
    return [dg.AssetKey(["silver", n]) for n in names]


def freshness_checks(sources: Sources) -> list[dg.AssetChecksDefinition]:
    return [
        *dg.build_last_update_freshness_checks(
            assets=source_asset_keys(sources), lower_bound_delta=BRONZE_WINDOW
        ),
        *dg.build_last_update_freshness_checks(
            assets=silver_asset_keys(sources), lower_bound_delta=SILVER_WINDOW
        ),
    ]


def freshness_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    return dg.build_sensor_for_freshness_checks(
        freshness_checks=checks,
        name="freshness_checks_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
