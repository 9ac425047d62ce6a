"""Load time of the code location against importing Dagster and dagster-dbt alone.

Every run process and Kubernetes step pod imports the code location before its first
step, and ``dagster dev`` reloads it on every change. This bench starts ``--repeat``
pairs of fresh interpreters, one after the other so both sides see the same machine
load: (a) imports the module ``[tool.dagster] module_name`` names in pyproject.toml
(what ``workspace.yaml`` and ``dagster definitions validate`` load) and resolves its
Definitions, (b) runs ``import dagster, dagster_dbt``. Each child times itself, so the
interpreter's own start is outside both figures. The ratio is of the medians.
Usage: python -m bench.load_time [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tomllib

from bench.common import Figure
from lakehouse.settings import PROJECT_ROOT

GOAL = 1.25  # issue 16: the code location costs at most a quarter more than the bare imports

BARE = """
import time
start = time.perf_counter()
import dagster, dagster_dbt
print(time.perf_counter() - start)
"""

LOCATION = """
import importlib, time
start = time.perf_counter()
import dagster as dg
module = importlib.import_module({module!r})
for value in vars(module).values():
    if isinstance(value, dg.Definitions):
        value.get_repository_def()
print(time.perf_counter() - start)
"""


def code_location_module() -> str:
    """The module Dagster loads the code location from (pyproject's ``[tool.dagster]``)."""
    with (PROJECT_ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["tool"]["dagster"]["module_name"]


def timed_child(source: str) -> float:
    """Seconds the child reports for its work, in a fresh interpreter from the repo root."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    result = subprocess.run(
        [sys.executable, "-c", source],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def measure(repeat: int = 5) -> tuple[list[float], list[float]]:
    """Seconds of (a) loading the code location and (b) the bare imports, ``repeat`` each."""
    location = LOCATION.format(module=code_location_module())
    loads, bare = [], []
    for _ in range(repeat):
        loads.append(timed_child(location))
        bare.append(timed_child(BARE))
    return loads, bare


def summary(loads: list[float], bare: list[float]) -> str:
    """The bench's last line: both medians and their ratio."""
    load_s, bare_s = statistics.median(loads), statistics.median(bare)
    return (
        f"load {load_s:.2f} s; dagster+dagster_dbt import {bare_s:.2f} s; "
        f"ratio {load_s / bare_s:.2f}"
    )


def run(repeat: int = 5) -> list[Figure]:
    loads, bare = measure(repeat)
    load_s, bare_s = statistics.median(loads), statistics.median(bare)
    name = "load time"
    return [
        Figure(name, f"{code_location_module()}, median of {repeat}", f"{load_s:.2f} s"),
        Figure(name, "import dagster, dagster_dbt", f"{bare_s:.2f} s"),
        Figure(name, "ratio", f"{load_s / bare_s:.2f}", f"<= {GOAL}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    loads, bare = measure(args.repeat)
    print("load s:", json.dumps([round(s, 2) for s in loads]))
    print("dagster+dagster_dbt s:", json.dumps([round(s, 2) for s in bare]))
    print(summary(loads, bare))


if __name__ == "__main__":
    main()
