"""Run every benchmark and print one table (``make bench``).

Each bench module also runs alone (``python -m bench.<module> --help``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib

from bench.common import Figure, machine

BENCHES = [
    "kafka_throughput",
    "gc_freeze",
    "landing_throughput",
    "landing_wide",
    "silver_wide",
    "commit_cost",
    "sensor_backlog",
    "latency",
    "incremental",
    "cdc_engines",
]


def print_table(figures: list[Figure]) -> None:
    print(f"machine: {machine()}")
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    widths = [max(len(getattr(f, a)) for f in figures) for a in ("bench", "measure", "value")]
    widths = [max(w, 8) for w in widths]
    header = ("bench", "measure", "value", "goal")
    print("  ".join(h.ljust(w) for h, w in zip(header, [*widths, 0], strict=True)))
    for f in figures:
        cells = (f.bench, f.measure, f.value, f.goal)
        print("  ".join(c.ljust(w) for c, w in zip(cells, [*widths, 0], strict=True)).rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=BENCHES, help="run these benches only")
    args = parser.parse_args()
    figures: list[Figure] = []
    last_lines: list[str] = []  # a bench's own summary line, printed after the table
    for name in args.only or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        figures += module.run()
        last_lines += [module.LAST_LINE] if getattr(module, "LAST_LINE", "") else []
    print_table(figures)
    for line in last_lines:
        print(line)


if __name__ == "__main__":
    main()
