"""The code location loads without the engines it drives.

Every run process and every Kubernetes step pod imports the code location before it does
any work, and ``dagster dev`` reloads it on every change: pyspark, the dbt adapters, the
Kubernetes client and sqlglot belong inside the step, sensor or resource method that uses
them (DESIGN.md, "Load time is a feature"). Timings are for ``bench/load_time.py``; this
test checks what is imported, which does not depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lakehouse.settings import PROJECT_ROOT

# Never imported while the code location loads locally (prefixes of module names).
ENGINES = (
    "pyspark",
    "py4j",
    "dagster_pyspark",
    "kubernetes",
    "dagster_k8s",
    "google.auth",
    "dbt.adapters.duckdb",
    "dbt.adapters.trino",
    "duckdb",
    "trino",
    "pandera",
    "pandas",
    "kafka",
    "boto3",
    "psycopg",
    "setuptools",
    "pyarrow",
    "pyiceberg.catalog",
    "pyiceberg.table",
    "cryptography",
)
# dagster-dbt imports these itself (``dagster_dbt.compat`` imports ``dbt.adapters.base``,
# ``dagster_dbt.core.dbt_cli_event`` imports sqlglot), so they cannot be absent while gold is
# built with ``@dbt_assets``; the code location must not import anything more of them.
BESIDE_DAGSTER_DBT = ("sqlglot", "dbt.adapters")

CHILD = """
import json, sys
import dagster, dagster_dbt
before = set(sys.modules)
import lakehouse.definitions as location
location.defs.get_repository_def()
print(json.dumps({"before": sorted(before), "after": sorted(sys.modules)}))
"""


def _matching(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def _load_in_a_fresh_interpreter() -> tuple[set[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_IS_DEV_CLI"}
    env.pop("LAKEHOUSE_K8S_EXECUTOR", None)
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    return set(loaded["before"]), set(loaded["after"])


def test_the_code_location_loads_without_the_engines(dbt_manifest):
    before, after = _load_in_a_fresh_interpreter()
    engines = _matching(after, ENGINES)
    # one example module per package is enough to say who to look for
    by_package = sorted({m.split(".")[0] if "." in m else m for m in engines})
    assert not engines, (
        f"the code location imports {by_package} at load (e.g. {engines[:5]}); import them "
        "inside the step, sensor or resource method that uses them "
        "(python -X importtime -c 'import lakehouse.definitions' shows who)"
    )
    beyond = _matching(after - before, BESIDE_DAGSTER_DBT)
    assert not beyond, f"the code location imports more than dagster-dbt does: {beyond[:10]}"
