"""Cost of one position commit as a table's snapshot history grows.

Every ingestion batch ends in one or two position commits (quarantine, then
bronze), and a bronze table keeps every snapshot until maintenance expires it (a
day by default), so a busy source commits against a history of hundreds. Times
``append_files_with_position`` of one already written data file to a table holding
``--history`` snapshots of earlier batches (median of ``--repeat``).
Usage: python -m bench.commit_cost [--history 1 100 500] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime

from bench.common import Figure, fresh_catalog


def commit_seconds(history: int, repeat: int) -> float:
    from lakehouse.declarations.layouts import QUARANTINE
    from lakehouse.ingest.records import QuarantineBuffer
    from lakehouse.tables.commits import append_files_with_position, ensure_table
    from lakehouse.tables.data_files import write_data_files

    catalog = fresh_catalog(tempfile.mkdtemp(prefix="lakehouse-bench-"))
    table = ensure_table(catalog, "bronze.commit_cost", QUARANTINE)
    for n in range(history):
        append_files_with_position(table, [], "bench", {"0": n}, "history")
    rejects = QuarantineBuffer("bench", "bench", datetime.now(UTC))
    rejects.add("json", "value is not valid JSON", "{", _file="s3://landing/x.csv", _row=2)
    files = write_data_files(table, rejects.to_arrow())
    assert files
    times = []
    for n in range(repeat):
        start = time.perf_counter()
        append_files_with_position(table, files, "bench", {"0": history + n}, "bench")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(histories: tuple[int, ...] = (1, 100, 500), repeat: int = 20) -> list[Figure]:
    return [
        Figure(
            "position commit",
            f"one commit, {h} snapshots of history",
            f"{1000 * commit_seconds(h, repeat):.1f} ms",
        )
        for h in histories
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    from bench.run import print_table

    print_table(run(tuple(args.history), args.repeat))


if __name__ == "__main__":
    main()
