"""Freshness: every source's bronze table and every silver table must have been updated
recently, or its freshness check fails.

A stalled sensor (broker unreachable, a crash loop, a paused sensor) lands nothing,
so bronze stops updating and its check fails within the window; silver tables
follow one hop later. The checks run inside the runs that materialize the assets and,
between runs, from ``freshness_checks_sensor``, so a quiet source is noticed even
when no run happens. The windows are generous for the demo's cadence; tighten them
per source when the source's expected arrival rate is known.

Dagster marks these builders superseded by ``FreshnessPolicy`` objects (since 1.12;
in 1.13 the policies are public and on by default). We keep the checks on purpose: a
policy is evaluated only by a running daemon (the one-off ``lakehouse demo`` run would
never evaluate one), and it is not an asset check, so the freshness results would leave
the run's check report, its history and the graph (``tests/test_freshness.py``,
``tests/snapshots/graph.json``). The warning is silenced here only; moving is a change
of what users see, to be decided on its own.
"""

import warnings
from datetime import timedelta

import dagster as dg

BRONZE_WINDOW = timedelta(hours=2)
SILVER_WINDOW = timedelta(hours=3)


def last_update_checks(
    keys: list[dg.AssetKey], window: timedelta
) -> list[dg.AssetChecksDefinition]:
    """A freshness check per asset: it fails when the asset was not updated within ``window``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return list(dg.build_last_update_freshness_checks(assets=keys, lower_bound_delta=window))


def freshness_sensor(checks: list[dg.AssetChecksDefinition]) -> dg.SensorDefinition:
    """Evaluates ``checks`` between runs, so a quiet source is noticed without a run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(
            freshness_checks=checks,
            name="freshness_checks_sensor",
            minimum_interval_seconds=300,
            default_status=dg.DefaultSensorStatus.RUNNING,
        )
