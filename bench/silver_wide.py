"""Typed silver of the wide landing shape: a full rebuild and a one-file increment (issue 18).

The shape and the generator are ``bench.landing_wide``'s (TPC-H ``lineitem``, 16
columns, by ``tpchgen-cli``): every file but the last is landed in bronze through the S3
endpoint, ``silver.lineitem`` is built in full, the last file is landed, and silver is
built again (incrementally). After each build the table's contract check runs as the
asset check does (``quality.table_checks.check_table``): after the full build on every
row, as a first evaluation does, both as one frame (how every check ran before) and a
bucket of keys at a time; after the increment on the keys its bronze rows carry (the
typed scope). Each build and check runs in a fresh interpreter, so its peak RSS is its
own (imports included, about 250 MiB). The last line printed is ``wide silver: full <s>
s, peak <a> MiB; increment <s> s, peak <b> MiB; check full <s> s, peak <c> MiB (one
frame <s> s, <d> MiB); check increment <s> s, peak <e> MiB``. The default
(scale 0.1, 4 files, 600k rows) runs in about a minute here; ``--scale 1 --parts 12`` is
the issue's 6,001,215 rows (the increment then holds 500k of them).
Usage: python -m bench.silver_wide [--scale 0.1] [--parts 4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from bench.common import Figure, fresh_catalog, local_services
from bench.landing_wide import _peak_mib, generate, source
from lakehouse.quality.table_checks import ROWS_PER_BUCKET

LAST_LINE = ""


def side_build(expected: str) -> dict:
    """One silver build of ``lineitem`` in this process, on the catalog the env names."""
    from lakehouse.defs.silver.builds import silver_shape
    from lakehouse.silver.typed import TypedBuild
    from resources.iceberg import IcebergCatalogResource

    lineitem = source()
    catalog = IcebergCatalogResource().load()
    build = TypedBuild(catalog, lineitem, silver_shape(lineitem, None), f"bench-{expected}")
    start = time.perf_counter()
    built = build.run()
    seconds = time.perf_counter() - start
    assert built.plan.mode == expected, built.plan
    return {
        "seconds": seconds,
        "bronze_rows": built.bronze_rows,
        "rows_written": built.rows_written,
        "silver_rows": catalog.load_table("silver.lineitem").scan().count(),
        "peak_mib": _peak_mib(),
    }


def side_check(scope: str, rows_per_bucket: int) -> dict:
    """The contract check of ``silver.lineitem`` in this process: every row (``full``), or
    the keys of the bronze rows landed since the silver snapshot in $BENCH_SINCE."""
    from lakehouse.quality.contracts import default_contract
    from lakehouse.quality.scope import full, new_bronze_runs, typed_scope
    from lakehouse.quality.table_checks import check_table
    from resources.iceberg import IcebergCatalogResource

    lineitem = source()
    catalog = IcebergCatalogResource().load()
    table = catalog.load_table("silver.lineitem")
    start = time.perf_counter()
    if scope == "full":
        checked = full("bench: every row")
    else:
        bronze = catalog.load_table(lineitem.bronze_table)
        runs, reason = new_bronze_runs(table, bronze, int(os.environ["BENCH_SINCE"]))
        assert runs is not None, reason
        checked = typed_scope(lineitem, bronze, runs, reason)
    evaluation = check_table(table, default_contract(lineitem), checked, rows_per_bucket)
    seconds = time.perf_counter() - start
    failing = {r: o.failing_rows for r, o in evaluation.outcomes.items() if o.failing_rows}
    assert not failing, failing  # lineitem keeps its contract
    return {"seconds": seconds, "rows": evaluation.rows, "peak_mib": _peak_mib()}


def _in_own_process(expected: str, *check: str, env: dict | None = None) -> dict:
    side = ["--side", expected] if not check else ["--check", *check]
    command = [sys.executable, "-m", "bench.silver_wide", *side]
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if done.returncode:
        raise RuntimeError(f"{expected} build failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(scale: float = 0.1, parts: int = 4) -> list[Figure]:
    global LAST_LINE
    from lakehouse.declarations.layouts import QUARANTINE
    from lakehouse.ingest.landing.reader import ingest_files, list_new_files
    from lakehouse.settings import get_settings
    from lakehouse.tables.commits import ensure_table
    from resources.s3 import S3Resource

    assert parts >= 2, "the increment is the last file"
    with local_services("s3") as state:
        lineitem = source()
        s3 = S3Resource().client()
        bucket = get_settings().landing_bucket
        s3.create_bucket(Bucket=bucket)
        for n, path in enumerate(generate(scale, parts, tempfile.mkdtemp(dir=state))):
            s3.upload_file(str(path), bucket, f"{lineitem.key_prefix}part-{n:03d}.csv")
            path.unlink()
        keys = list_new_files(s3, bucket, lineitem, set(), limit=10_000)
        catalog = fresh_catalog(state)  # the child processes open it from the environment
        ensure_table(catalog, lineitem.bronze_table, lineitem.layout)
        ensure_table(catalog, lineitem.quarantine_table, QUARANTINE)
        history = ingest_files(catalog, s3, bucket, lineitem, keys[:-1], "bench-0").landed
        full = _in_own_process("full")
        since = str(catalog.load_table("silver.lineitem").current_snapshot().snapshot_id)
        whole = _in_own_process("", "full", str(10**12))
        bucketed = _in_own_process("", "full", str(ROWS_PER_BUCKET))
        new = ingest_files(catalog, s3, bucket, lineitem, keys[-1:], "bench-1").landed
        increment = _in_own_process("incremental")
        scoped = _in_own_process("", "increment", str(ROWS_PER_BUCKET), env={"BENCH_SINCE": since})
    # lineitem's (l_orderkey, l_linenumber) is unique: every landed row is a silver row
    assert full["silver_rows"] == full["rows_written"] == history, (full, history)
    assert increment["bronze_rows"] == new, (increment, new)
    assert increment["silver_rows"] == history + new, (increment, history, new)
    assert whole["rows"] == bucketed["rows"] == history, (whole, bucketed)
    assert new <= scoped["rows"] < history + new, scoped  # the orders the new rows belong to
    name = "wide silver (typed)"
    LAST_LINE = (
        f"wide silver: full {full['seconds']:.1f} s, peak {full['peak_mib']:.0f} MiB; "
        f"increment {increment['seconds']:.1f} s, peak {increment['peak_mib']:.0f} MiB; "
        f"check full {_shown(bucketed)} (one frame {_shown(whole)}); "
        f"check increment {_shown(scoped)}"
    )
    return [
        Figure(name, "rows: history + increment", f"{history:,} + {new:,} ({len(keys)} files)"),
        Figure(
            name,
            "full rebuild",
            f"{full['seconds']:.2f} s, peak {full['peak_mib']:.0f} MiB",
            "peak <= 1024 MiB at full size",
        ),
        Figure(
            name,
            "one-file increment",
            f"{increment['seconds']:.2f} s, peak {increment['peak_mib']:.0f} MiB",
            "peak <= 1024 MiB at full size",
        ),
        Figure(name, "contract check, every row, one frame (before)", _shown(whole)),
        Figure(
            name,
            "contract check, every row, buckets",
            f"{_shown(bucketed)} ({bucketed['rows']:,} rows)",
            "peak <= 1024 MiB at full size",
        ),
        Figure(
            name,
            "contract check, increment's keys",
            f"{_shown(scoped)} ({scoped['rows']:,} rows)",
            "peak <= 1024 MiB at full size",
        ),
    ]


def _shown(figures: dict) -> str:
    return f"{figures['seconds']:.2f} s, peak {figures['peak_mib']:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor")
    parser.add_argument("--parts", type=int, default=4, help="files to split lineitem into")
    parser.add_argument("--side", choices=["full", "incremental"], help=argparse.SUPPRESS)
    parser.add_argument("--check", nargs=2, help=argparse.SUPPRESS)  # scope, rows per bucket
    args = parser.parse_args()
    if args.side:  # one build, in its own process: figures as JSON
        print(json.dumps(side_build(args.side)))
        return
    if args.check:  # one contract check, in its own process
        print(json.dumps(side_check(args.check[0], int(args.check[1]))))
        return
    from bench.run import print_table

    print_table(run(args.scale, args.parts))
    print(LAST_LINE)


if __name__ == "__main__":
    main()
