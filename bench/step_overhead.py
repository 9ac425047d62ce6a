"""What a process per step costs: one run of a job in-process, then under the multiprocess
executor (the local stand-in for the k8s executor's pod per step, minus the pod's
scheduling and image start).

Loads the demo data once (its own stack and state), runs the ``lakehouse`` job once to
build everything, then measures, per executor, a run with nothing new to ingest (so the
steps are the fixed cost a 30-second cadence pays): the wall time, the time from the
run's start to its first step's start, and the sum of the step times. ``--job`` picks
another job (e.g. ``ingest_clickstream``).

Usage: python -m bench.step_overhead [--job lakehouse] [--repeat 2]
The last line reads ``step overhead <job>: in-process <s> s, multiprocess <s> s
(first step after <s> s / <s> s)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench.common import Figure, local_services, machine

JOB = os.environ.get("LAKEHOUSE_BENCH_JOB", "lakehouse")


def in_process_job():
    """The job as the code location defines it (in-process: the local executor)."""
    from lakehouse.definitions import build_definitions

    return build_definitions().resolve_job_def(JOB)


def multiprocess_job():
    """The same job with the multiprocess executor: a fresh process per step."""
    import dagster as dg

    from lakehouse.definitions import build_definitions

    defs = build_definitions()
    job = defs.resolve_job_def(JOB)
    selection = dg.AssetSelection.assets(*job.asset_layer.executable_asset_keys)
    extra = dg.define_asset_job(
        f"{JOB}_multiprocess", selection=selection, executor_def=dg.multiprocess_executor
    )
    merged = dg.Definitions.merge(defs, dg.Definitions(jobs=[extra]))
    return merged.resolve_job_def(f"{JOB}_multiprocess")


def _timings(instance, run_id: str) -> tuple[float, float, float]:
    """Wall time, run start -> first step start, and the steps' summed time."""
    from lakehouse.demo.summary import run_times

    times = run_times(instance, run_id)
    return times.wall, times.first_step, sum(times.steps.values())


def _run(instance, factory) -> tuple[float, float, float, float]:
    import dagster as dg

    started = time.monotonic()
    result = dg.execute_job(dg.reconstructable(factory), instance=instance)
    assert result.success, f"{factory.__name__} failed"
    return (time.monotonic() - started, *_timings(instance, result.run_id))


def run(argv: list[str] | None = None) -> list[Figure]:
    global JOB
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=JOB)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv or [])
    JOB = os.environ["LAKEHOUSE_BENCH_JOB"] = args.job
    with local_services("kafka", "s3") as state:
        import dagster as dg

        from lakehouse.demo.load import publish_demo
        from lakehouse.settings import get_settings
        from lakehouse.stack.provision import provision

        os.environ["DAGSTER_HOME"] = os.path.join(state, "dagster")
        os.makedirs(os.environ["DAGSTER_HOME"], exist_ok=True)
        settings = get_settings()
        provision(settings)
        publish_demo(settings, 1)
        with dg.DagsterInstance.get() as instance:
            _run(instance, in_process_job)  # everything built once: later runs find nothing new
            measured = {"in-process": [], "multiprocess": []}
            for _ in range(args.repeat):
                measured["in-process"].append(_run(instance, in_process_job))
                measured["multiprocess"].append(_run(instance, multiprocess_job))
    figures = []
    medians = {}
    for name, runs in measured.items():
        total, wall, first, steps = (statistics.median(r[i] for r in runs) for i in range(4))
        medians[name] = (total, first)
        figures.append(
            Figure(
                "step_overhead",
                f"{args.job}, nothing new: {name}",
                f"{total:.1f} s (run {wall:.1f} s, first step after {first:.1f} s, "
                f"steps {steps:.1f} s)",
            )
        )
    from bench.run import print_table

    print_table(figures)
    ip, mp = medians["in-process"], medians["multiprocess"]
    print(
        f"step overhead {args.job}: in-process {ip[0]:.1f} s, multiprocess {mp[0]:.1f} s "
        f"(first step after {ip[1]:.1f} s / {mp[1]:.1f} s)"
    )
    return figures


if __name__ == "__main__":
    print(machine(), file=sys.stderr)
    run(sys.argv[1:])
