"""Where the dbt project lives and which dbt runs it (dbt-duckdb locally, dbt-trino in prod)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import threading
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject
from packaging import version

from lakehouse.dbt.scratch import STALE_S, remove_stale
from lakehouse.settings import PROJECT_ROOT

DBT_PROJECT_DIR: Path = PROJECT_ROOT / "dbt_project"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _beside_interpreter() -> Path:
    return Path(sys.executable).parent / "dbt"


def dbt_executable() -> str:
    """dbt beside this interpreter (the venv need not be activated), else the one on PATH."""
    beside = _beside_interpreter()
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


class LakehouseDbtCli(DbtCliResource):
    """dagster-dbt's dbt CLI resource, which knows the version of the dbt it runs.

    Before its first dbt command in a run, ``DbtCliResource`` runs ``dbt --version`` to
    tell dbt Fusion from dbt-core (its private ``_cli_version``). That command imports
    every installed adapter, and dbt-trino then logs ``INFO:trino.auth:keyring module not
    found`` through the root handler snowplow-tracker (dbt's usage tracking) installs
    with ``logging.basicConfig()``; it also asks PyPI for the latest versions (1 s
    timeout each, three packages). 2.5 s and two lines of noise per dbt step here, more
    in a pod without internet access. The dbt beside this interpreter is this
    environment's dbt-core, whose version is known without running it; any other
    executable is still asked (``tests/test_gold.py`` guards the override).
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == _beside_interpreter():
            return version.parse(importlib.metadata.version("dbt-core"))
        return DbtCliResource._cli_version.func(self)

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        """No dbt adapter in the step's process.

        dagster-dbt opens one (dbt's adapter, profile and project loaded in the step:
        1.5-3 s of CPU per dbt step here) only for ``fetch_row_counts`` and
        ``fetch_column_metadata``, which we do not call: they open a second DuckDB
        connection, which cannot see the in-memory session, so gold's metadata comes from
        the Iceberg tables instead (``defs/gold/assets.py``). ``tests/test_gold.py``
        guards the override.
        """
        return None

    def cli(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, **kwargs: Any
    ) -> DbtCliInvocation:
        """dagster-dbt's ``cli``, with ``env`` added to the dbt process's environment.

        The partition window reaches the models as environment variables rather than
        ``--vars``: dbt re-parses the whole project whenever the command-line vars change
        (a few seconds per partitioned run), but only the files that read an environment
        variable when its value changes. dagster-dbt copies ``os.environ`` when it starts
        dbt, so the values are set around that call alone.
        """
        if not env:
            invocation = super().cli(args, **kwargs)
        else:
            with _ENVIRON_LOCK:
                saved = {name: os.environ.get(name) for name in env}
                os.environ.update(env)
                try:
                    invocation = super().cli(args, **kwargs)
                finally:
                    for name, value in saved.items():
                        if value is None:
                            os.environ.pop(name, None)
                        else:
                            os.environ[name] = value
        if _INVOCATION_TARGET.fullmatch(invocation.target_path.name):  # not a given path
            prune_invocation_targets(invocation.target_path.parent)
        return invocation


_ENVIRON_LOCK = threading.Lock()

# dagster-dbt's target directory per invocation: <op>-<run id[:7]>-<uuid[:7]>
_INVOCATION_TARGET = re.compile(r"[A-Za-z0-9_]+-[0-9a-f]{7}-[0-9a-f]{7}")


def prune_invocation_targets(root: Path, older_than_s: float = STALE_S) -> list[Path]:
    """Remove the target directories dagster-dbt made for invocations over a day old.

    Each dbt step gets its own (manifest, compiled SQL, run results, dbt.log: about a
    megabyte) and nothing else removes them: under ``lakehouse dev`` or a long-lived
    code server they pile up by the thousand. The run's Dagster logs keep what dbt printed.
    """
    return remove_stale(root, _INVOCATION_TARGET, older_than_s)


# the partition window of a partitioned gold run (models/marts/daily_revenue.sql):
# first day included, last day excluded; unset, a model covers every day
WINDOW_START_VAR = "LAKEHOUSE_GOLD_WINDOW_START"
WINDOW_END_VAR = "LAKEHOUSE_GOLD_WINDOW_END"


def dbt_cli(**overrides) -> LakehouseDbtCli:
    """The project's dbt CLI; the target is chosen by ``LAKEHOUSE_DBT_TARGET`` inside
    profiles.yml when dbt runs."""
    options = {
        "project_dir": dbt_project,
        "profiles_dir": str(DBT_PROJECT_DIR),
        "dbt_executable": dbt_executable(),
    }
    return LakehouseDbtCli(**{**options, **overrides})


# what a parse reads besides its inputs' contents: dbt's version and the environment
# variables the project reads (``env_var(...)`` in profiles.yml, dbt_project.yml, models)
# and dbt's own DBT_* settings
_PARSE_STAMP = ".lakehouse-parse-stamp"
_NOT_INPUTS = {"target", "logs", "dbt_packages"}
_ENV_VAR_CALL = re.compile(r"""env_var\(\s*['"]([A-Za-z_][A-Za-z0-9_]*)['"]""")


def project_fingerprint(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """A digest of what a ``dbt parse`` of ``project_dir`` depends on: every file of the
    project (not its outputs), dbt-core's version, the variables the project reads and
    the DBT_* variables.

    Only the variables the project names count: another state directory or Kafka port
    (a test, a bench, a second checkout) is no reason for a 4-8 s parse.
    """
    digest = hashlib.sha256(importlib.metadata.version("dbt-core").encode())
    read: set[str] = set()
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if path.is_file() and relative.parts[0] not in _NOT_INPUTS:
            content = path.read_bytes()
            digest.update(str(relative).encode() + b"\0" + content + b"\0")
            read.update(_ENV_VAR_CALL.findall(content.decode("utf-8", errors="replace")))
    for name in sorted(os.environ):
        if name in read or name.startswith("DBT_"):
            digest.update(f"{name}={os.environ[name]}\0".encode())
    return digest.hexdigest()


def prepare_manifest(force: bool = False) -> bool:
    """Parse the dbt project into the manifest the gold assets are built from, unless the
    manifest was parsed from exactly these files in this environment (a ``dbt parse``
    costs 4-8 s of process start and imports even when dbt finds nothing to re-parse).
    Returns whether dbt ran."""
    target = Path(dbt_project.target_path)
    if not target.is_absolute():
        target = DBT_PROJECT_DIR / target
    stamp = target / _PARSE_STAMP
    fingerprint = project_fingerprint()
    current = (target / "manifest.json").exists() and stamp.exists()
    if not force and current and stamp.read_text() == fingerprint:
        return False
    dbt_cli().cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    target.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return True


def prepare_if_dev() -> None:
    """Re-parse when a dev server (``dg dev``, ``dagster dev``) loads the code, so edited
    models show on reload.

    ``DbtProject.prepare_if_dev`` does the same with the ``dbt`` found on PATH, which is
    missing when the venv is not activated (``.venv/bin/dg dev``); this uses the dbt
    beside the interpreter.
    """
    if os.getenv("DAGSTER_IS_DEV_CLI"):
        prepare_manifest()
