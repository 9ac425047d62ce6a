"""Typed silver of the wide landing shape: a full rebuild and a one-file increment (issue 18).

The shape and the generator are ``bench.landing_wide``'s (TPC-H ``lineitem``, 16
columns, by ``tpchgen-cli``): every file but the last is landed in bronze through the S3
endpoint, ``silver.lineitem`` is built in full, the last file is landed, and silver is
built again (incrementally). Each silver build runs in a fresh interpreter, so its peak
RSS is the build's own (imports included, about 250 MiB). The last line printed is
``wide silver: full <s> s, peak <a> MiB; increment <s> s, peak <b> MiB``. The default
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


def _in_own_process(expected: str) -> dict:
    command = [sys.executable, "-m", "bench.silver_wide", "--side", expected]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
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
        history = ingest_files(catalog, s3, bucket, lineitem, keys[:-1], "bench").landed
        full = _in_own_process("full")
        new = ingest_files(catalog, s3, bucket, lineitem, keys[-1:], "bench").landed
        increment = _in_own_process("incremental")
    # lineitem's (l_orderkey, l_linenumber) is unique: every landed row is a silver row
    assert full["silver_rows"] == full["rows_written"] == history, (full, history)
    assert increment["bronze_rows"] == new, (increment, new)
    assert increment["silver_rows"] == history + new, (increment, history, new)
    name = "wide silver (typed)"
    LAST_LINE = (
        f"wide silver: full {full['seconds']:.1f} s, peak {full['peak_mib']:.0f} MiB; "
        f"increment {increment['seconds']:.1f} s, peak {increment['peak_mib']:.0f} MiB"
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
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.1, help="TPC-H scale factor")
    parser.add_argument("--parts", type=int, default=4, help="files to split lineitem into")
    parser.add_argument("--side", choices=["full", "incremental"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:  # one build, in its own process: figures as JSON
        print(json.dumps(side_build(args.side)))
        return
    from bench.run import print_table

    print_table(run(args.scale, args.parts))
    print(LAST_LINE)


if __name__ == "__main__":
    main()
