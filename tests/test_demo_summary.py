"""The demo's summary says where a run's time went, from the run's own event log."""

from __future__ import annotations

import time

import dagster as dg

from lakehouse.demo.summary import run_times, where_the_time_went


def test_the_summary_names_the_runs_wall_time_and_its_longest_steps():
    @dg.op
    def slow() -> int:
        time.sleep(0.3)
        return 1

    @dg.op
    def quick(value: int) -> int:
        return value + 1

    @dg.job
    def probe() -> None:
        quick(slow())

    with dg.instance_for_test() as instance:
        result = probe.execute_in_process(instance=instance)
        times = run_times(instance, result.run_id)
        line = where_the_time_went(instance, result, top=1)
    assert set(times.steps) == {"slow", "quick"}
    assert times.steps["slow"] >= 0.3 > times.steps["quick"]
    assert times.wall >= times.steps["slow"] + times.steps["quick"]
    assert 0 <= times.first_step < times.wall
    # the figures as measured: a loaded machine makes the 0.3 s sleep take longer
    slow_s = times.steps["slow"]
    assert line.startswith(f"  probe: {times.wall:.1f} s in 2 steps (slow {slow_s:.1f} s, 1 more")
