"""A CDC source's silver tables built by each engine: Arrow in one process, and Spark.

Lands ``--days`` days of ``--changes`` Debezium changes to ``customers`` (``--customers``
keys first; updates, inserts, deletes) in bronze, then, in a fresh process per build
(as a step runs), builds ``silver.customers``, its history and quarantine from scratch
(a full rebuild: the whole changelog) with each engine, and then one more day on top
(an incremental build). Reports each build's time and the step process's peak RSS;
Spark's JVM is a separate process (its heap bounded by ``LAKEHOUSE_SPARK_DRIVER_MEMORY``)
whose peak is reported apart. The tables both engines wrote are compared row for row.

Usage: python -m bench.cdc_engines [--days 10] [--changes 30000] [--customers 50000]
The last line reads ``cdc engines, full rebuild of <n> changes: arrow <s> s / <a> MiB;
spark <s> s / <b> MiB (+ JVM <c> MiB)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile

from bench.common import Figure, fresh_catalog, machine
from bench.incremental import Customers, _land, _peak_mib

TABLES = ("silver.customers", "silver.customers_history", "quarantine.customers")


def child(state: str, engine: str, full: bool) -> None:
    """One build in this fresh process; prints time, peak RSS and the tables' digest."""
    import time

    os.environ["LAKEHOUSE_STATE_DIR"] = state
    from lakehouse.declarations.sources import sources
    from lakehouse.defs.silver.builds import silver_shape
    from lakehouse.quality.contracts import contract_for
    from lakehouse.silver.cdc import CdcBuild
    from lakehouse.spark.cdc_build import SparkCdcBuild
    from resources.iceberg import IcebergCatalogResource
    from resources.spark import SparkResource

    catalog = IcebergCatalogResource().load()
    source, contract = sources().cdc_source("customers"), contract_for("silver.customers")
    args = (catalog, source, silver_shape(source, contract), f"bench-{engine}")
    spark = SparkResource() if engine == "spark" else None
    session_seconds = 0.0
    if spark is not None:
        began = time.perf_counter()
        session = spark.session()
        session_seconds = time.perf_counter() - began
        build = SparkCdcBuild(*args, contract=contract, spark=session)
    else:
        build = CdcBuild(*args, contract=contract)
    started = time.perf_counter()
    built = build.run(full=full)
    seconds = time.perf_counter() - started
    jvm = _jvm_peak_mib(spark) if spark is not None else 0.0
    if spark is not None:
        spark.teardown_after_execution(None)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "session_seconds": session_seconds,
                "peak_mib": _peak_mib(),
                "jvm_peak_mib": jvm,
                "mode": built.plan.mode,
                "changes": built.changes_read,
                "digest": _digest(catalog),
            }
        )
    )


def _jvm_peak_mib(spark) -> float:
    """The JVM's peak RSS (a child of this process, still running)."""
    import glob

    peak = 0.0
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            with open(status) as f:
                text = f.read()
        except OSError:
            continue
        if f"PPid:\t{os.getpid()}\n" in text and "Name:\tjava" in text:
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
    return peak


def _digest(catalog) -> str:
    """The three tables' rows, order-free (quarantine without its run columns)."""
    digest = hashlib.sha256()
    for name in TABLES:
        rows = catalog.load_table(name).scan().to_arrow().to_pylist()
        lines = sorted(
            repr(sorted((k, repr(v)) for k, v in r.items() if k not in ("_ingested_at", "_run_id")))
            for r in rows
        )
        digest.update(f"{name}:{len(lines)}".encode())
        for line in lines:
            digest.update(line.encode())
    return digest.hexdigest()[:16]


def _measure(state: str, engine: str, full: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cdc_engines", "--child", state, "--engine", engine]
        + (["--full"] if full else []),
        capture_output=True,
        text=True,
        env={**os.environ, "LAKEHOUSE_STATE_DIR": state},
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _drop_silver(catalog) -> None:
    for name in TABLES:
        if catalog.table_exists(name):
            catalog.drop_table(name)


def run(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--changes", type=int, default=30_000)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--child")
    parser.add_argument("--engine", default="arrow")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv or [])
    if args.child:
        child(args.child, args.engine, args.full)
        return []
    from lakehouse.declarations.sources import sources
    from lakehouse.settings import get_settings

    # the jar cache `make install` built, before the state moves to a temporary directory
    os.environ.setdefault("LAKEHOUSE_SPARK_JARS_DIR", str(get_settings().spark_jars_path))
    root = tempfile.mkdtemp(prefix="lakehouse-bench-cdc-engines-")
    catalog = fresh_catalog(root)
    state = os.environ["LAKEHOUSE_STATE_DIR"]
    source = sources().cdc_source("customers")
    customers = Customers(random.Random(7), args.customers)
    offset = 0
    for day in range(args.days):
        offset = _land(catalog, source, customers.day(day, args.changes), day, offset)
    next_day = customers.day(args.days, args.changes)
    results = {}
    for engine in ("arrow", "spark"):
        _drop_silver(catalog)
        full = _measure(state, engine, full=True)
        results[engine] = full
    # one more day on top of Spark's tables, built by each engine from the same state
    landed = _land(catalog, source, next_day, args.days, offset)
    assert landed
    incremental = {}
    for engine in ("arrow", "spark"):
        snapshot = {n: catalog.load_table(n).current_snapshot().snapshot_id for n in TABLES}
        incremental[engine] = _measure(state, engine, full=False)
        for name, snapshot_id in snapshot.items():  # back to the state before this build
            table = catalog.load_table(name)
            with table.manage_snapshots() as manage:
                manage.rollback_to_snapshot(snapshot_id)
    figures = []
    for engine in ("arrow", "spark"):
        r, i = results[engine], incremental[engine]
        jvm = f" + JVM {r['jvm_peak_mib']:.0f} MiB" if r["jvm_peak_mib"] else ""
        figures.append(
            Figure(
                "cdc_engines",
                f"{engine}: full rebuild of {r['changes']:,} changes",
                f"{r['seconds']:.1f} s, peak {r['peak_mib']:.0f} MiB{jvm}",
            )
        )
        figures.append(
            Figure(
                "cdc_engines",
                f"{engine}: one day of {args.changes:,} changes on top ({i['mode']})",
                f"{i['seconds']:.1f} s, peak {i['peak_mib']:.0f} MiB",
            )
        )
    same = results["arrow"]["digest"] == results["spark"]["digest"]
    same_day = incremental["arrow"]["digest"] == incremental["spark"]["digest"]
    figures.append(
        Figure(
            "cdc_engines", "same rows from both engines (full, incremental)", f"{same}, {same_day}"
        )
    )
    if results["spark"]["session_seconds"]:
        figures.append(
            Figure(
                "cdc_engines",
                "spark session start (not in the build times)",
                f"{results['spark']['session_seconds']:.1f} s",
            )
        )
    from bench.run import print_table

    print_table(figures)
    a, s = results["arrow"], results["spark"]
    print(
        f"cdc engines, full rebuild of {a['changes']:,} changes: arrow {a['seconds']:.1f} s / "
        f"{a['peak_mib']:.0f} MiB; spark {s['seconds']:.1f} s / {s['peak_mib']:.0f} MiB "
        f"(+ JVM {s['jvm_peak_mib']:.0f} MiB)"
    )
    return figures


if __name__ == "__main__":
    print(machine(), file=sys.stderr)
    run(sys.argv[1:])
