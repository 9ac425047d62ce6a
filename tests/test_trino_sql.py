"""The gold SQL is checked for Trino without a server: compiled offline, read by sqlglot.

The project itself must pass; a copy of it with a column typo must fail, naming the
column and the file, whether the typo is in plain SQL or in an incremental branch.
"""

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.dbt.project import DBT_PROJECT_DIR, dbt_executable
from lakehouse.dbt.sql_check import (
    SqlCheckError,
    check_project,
    check_sql,
    source_schemas,
)

RELATIONS = {
    ("lakehouse", "silver", "page_views"): {"event_id": "varchar", "event_date": "date"},
}

# Added to the copy only: the typo sits in the branch dbt renders for an incremental run.
INCREMENTAL_PROBE = """
{{ config(materialized='incremental', incremental_strategy='delete+insert',
          unique_key='event_date') }}
select event_date, count(*) as views
from {{ source('silver', 'page_views') }}
{% if is_incremental() %}
where event_date >= (select max(event_dat) from {{ this }})
{% endif %}
group by event_date
"""

PROBE_DOCS = """
version: 2
models:
  - name: incremental_probe
    columns:
      - name: event_date
      - name: viewz
"""


def _copy_project(tmp_path: Path) -> Path:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def _inject_column_typo(project: Path, manifest: dict) -> tuple[str, str]:
    """Misspell, in the first model that selects a silver column, its first such column."""
    columns = {c for cols in source_schemas(manifest).values() for c in cols}
    for node in sorted(manifest["nodes"].values(), key=lambda n: n["original_file_path"]):
        reads_source = any(d.startswith("source.") for d in node["depends_on"]["nodes"])
        if node["resource_type"] != "model" or not reads_source:
            continue
        path = project / node["original_file_path"]
        text = path.read_text()
        body = re.search(r"\bselect\b", text, re.IGNORECASE)
        if body is None:
            continue
        words = re.finditer(r"\b[a-z_][a-z0-9_]*\b", text[body.end() :])
        word = next((w for w in words if w.group() in columns), None)
        if word:
            typo, at = f"{word.group()}_typo", body.end() + word.start()
            path.write_text(text[:at] + typo + text[body.end() + word.end() :])
            return node["original_file_path"], typo
    raise AssertionError("no model selects a silver column to misspell")


def test_every_model_and_test_compiles_for_trino_and_resolves(dbt_manifest):
    report = check_project()

    assert report.ok, "\n".join(map(str, report.problems))
    manifest = json.loads(dbt_manifest.read_text())
    expected = {
        uid for uid, n in manifest["nodes"].items() if n["resource_type"] in ("model", "test")
    }
    assert set(report.checked["fresh"]) == expected
    models = [uid for uid in expected if uid.startswith("model.")]
    assert all(report.outputs[uid] for uid in models)


def test_a_column_typo_fails_with_the_column_and_the_file(tmp_path, dbt_manifest):
    project = _copy_project(tmp_path)
    manifest = json.loads(dbt_manifest.read_text())
    typo_file, typo = _inject_column_typo(project, manifest)
    (project / "models" / "marts" / "incremental_probe.sql").write_text(INCREMENTAL_PROBE)
    (project / "models" / "marts" / "_probe.yml").write_text(PROBE_DOCS)

    result = CliRunner().invoke(app, ["check-sql", "--project-dir", str(project)])

    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert any(typo in e and e.startswith(f"error: {typo_file}: model ") for e in errors), errors
    probe = [e for e in errors if "incremental_probe" in e]
    assert len(probe) == 1, errors
    assert "'event_dat'" in probe[0] and "(incremental run)" in probe[0]
    assert "problem(s)" in errors[-1]
    stale_doc = "models/marts/_probe.yml: model incremental_probe: documents column 'viewz'"
    assert f"warning: {stale_doc}" in result.output


def test_without_the_offline_switch_dbt_trino_asks_the_server(tmp_path):
    """The override falls through to dbt-trino's macros: here, a refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "LAKEHOUSE_TRINO_HOST": "127.0.0.1",
        "LAKEHOUSE_TRINO_PORT": str(port),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    result = subprocess.run(
        [dbt_executable(), "compile", "--target", "trino", "--target-path", str(tmp_path)]
        + ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode != 0
    assert "Connection refused" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("select event_idd from lakehouse.silver.page_views", "event_idd"),
        ("select v.event_id from lakehouse.silver.page_views as p", "event_id"),
        ("select event_id from lakehouse.silver.nope", "unknown table lakehouse.silver.nope"),
        ("select event_date::varchar from lakehouse.silver.page_views", "'::' casts"),
        ("select event_id from lakehouse.silver.page_views where", "not valid Trino SQL"),
    ],
)
def test_check_sql_reports_what_trino_would_refuse(sql, problem):
    result = check_sql(sql, RELATIONS)

    assert result.problems and problem in result.problems[0]


def test_check_sql_infers_output_columns_and_warns_on_unknown_functions():
    result = check_sql(
        "with v as (select event_date as d, epoch_ms(1) as e from lakehouse.silver.page_views)"
        " select d, count(*) as n from v group by d",
        RELATIONS,
    )

    assert not result.problems
    assert result.outputs == {"d": "DATE", "n": "BIGINT"}
    assert any("epoch_ms" in w for w in result.warnings)


def _source(name: str, columns: tuple[str, ...] = ()) -> dict:
    source = {"source_name": "silver", "name": name, "identifier": name, "schema": "silver"}
    return {**source, "database": "lakehouse", "columns": {c: {} for c in columns}}


def test_a_dbt_source_without_a_declared_schema_is_refused():
    manifest = {"sources": {"source.lakehouse.silver.orderz": _source("orderz")}}

    with pytest.raises(SqlCheckError, match=r"no known Iceberg schema: silver\.orderz"):
        source_schemas(manifest)


def test_a_dbt_source_column_the_silver_table_lacks_is_refused():
    source = _source("page_views", ("event_id", "event_idd"))
    manifest = {"sources": {"source.lakehouse.silver.page_views": source}}

    with pytest.raises(SqlCheckError, match=r"silver\.page_views: \['event_idd'\]"):
        source_schemas(manifest)
