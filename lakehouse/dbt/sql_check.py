"""Check the dbt project's Trino SQL without a Trino server.

Production runs the gold models on Trino, which cannot run here; a typo in a column
name would otherwise surface only in production. So the project is compiled for the
``trino`` target offline (``macros/offline_compile.sql`` answers dbt's warehouse
questions) and every compiled model and data test is parsed with sqlglot's Trino
dialect and qualified against the Iceberg schemas of its inputs: the silver tables as
our code declares them, and upstream models' output columns, inferred in dependency
order. The project is compiled twice, as a first build and as an incremental run of
one partition (every model's table exists, a day window is passed), so both branches
of ``is_incremental()`` and of a partition window are checked.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any, NamedTuple

import sqlglot
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema
from sqlglot.tokens import TokenType

from lakehouse.declarations import layouts as table_schemas
from lakehouse.declarations.layouts import TableLayout, cdc_silver_layouts, typed_silver_layout
from lakehouse.declarations.sources import Sources, sources

# How each compile sees the warehouse (macros/offline_compile.sql) and which vars it gets:
# "fresh": no table exists yet, no vars (a first build, the full-refresh SQL);
# "incremental": every model's table exists and a partition window is passed, as the
# partitioned gold assets pass it (lakehouse/defs/gold/assets.py): the incremental SQL.
MODES: dict[str, dict[str, str]] = {
    "fresh": {},
    "incremental": {"min_date": "2024-01-01", "max_date": "2024-01-02"},
}
CHECKED_RESOURCES = ("model", "test")

Columns = dict[str, str]  # column -> Trino type
Relation = tuple[str, str, str]  # (catalog, schema, table), lower case


class SqlCheckError(Exception):
    """The project does not compile for Trino, or a source has no known schema."""


@dataclass(frozen=True)
class Problem:
    file: str
    node: str
    message: str
    compiled: str | None = None

    def __str__(self) -> str:
        where = f" (compiled SQL: {self.compiled})" if self.compiled else ""
        return f"{self.file}: {self.node}: {self.message}{where}"


@dataclass
class Report:
    checked: dict[str, list[str]] = field(default_factory=dict)  # mode -> node ids checked
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # downstream of a node with problems
    outputs: dict[str, Columns] = field(default_factory=dict)  # model id -> columns
    failed: set[str] = field(default_factory=set)  # node ids with problems, or downstream of one

    @property
    def ok(self) -> bool:
        return not self.problems


def silver_layouts(declared: Sources | None = None) -> dict[str, TableLayout]:
    """Every silver table our code writes, by table name, with the layout it is written with.

    Module constants ``SILVER_<NAME>`` in ``lakehouse.declarations.layouts`` are the silver
    tables of hand-written transforms; a CDC source adds ``<name>`` and ``<name>_history``;
    a database or landing source adds ``<name>``, its declared columns typed.
    """
    declared = declared or sources()
    layouts = {
        name[len("SILVER_") :].lower(): value
        for name, value in vars(table_schemas).items()
        if name.startswith("SILVER_") and isinstance(value, TableLayout)
    }
    for source in declared.cdc:
        current, history = cdc_silver_layouts(source.columns)
        layouts[source.name], layouts[f"{source.name}_history"] = current, history
    for source in (*declared.database, *declared.landing):
        layouts.setdefault(source.name, typed_silver_layout(source.columns))
    return layouts


_TRINO_TYPES: dict[type[IcebergType], str] = {
    StringType: "varchar",
    IntegerType: "integer",
    LongType: "bigint",
    FloatType: "real",
    DoubleType: "double",
    BooleanType: "boolean",
    DateType: "date",
    TimeType: "time(6)",
    TimestampType: "timestamp(6)",
    TimestamptzType: "timestamp(6) with time zone",
    BinaryType: "varbinary",
    UUIDType: "uuid",
}


def trino_type(iceberg_type: IcebergType) -> str:
    """The type Trino's Iceberg connector shows for an Iceberg column type."""
    if isinstance(iceberg_type, DecimalType):
        return f"decimal({iceberg_type.precision},{iceberg_type.scale})"
    try:
        return _TRINO_TYPES[type(iceberg_type)]
    except KeyError:
        raise SqlCheckError(f"no Trino type known for Iceberg type {iceberg_type}") from None


def _columns(schema: Schema) -> Columns:
    return {f.name.lower(): trino_type(f.field_type) for f in schema.fields}


def source_schemas(manifest: dict[str, Any]) -> dict[Relation, Columns]:
    """Columns of every dbt source, from the Iceberg schema our code declares for it."""
    from lakehouse.tables.run_history import LAYOUTS as RUN_HISTORY

    layouts = {("silver", name): layout for name, layout in silver_layouts().items()}
    # the run history the ops sensors write (gold.pipeline_health reads it)
    layouts.update({tuple(name.split(".")): layout for name, layout in RUN_HISTORY.items()})
    known: dict[Relation, Columns] = {}
    unknown, unknown_columns = [], []
    for source in manifest["sources"].values():
        key = (source["schema"].lower(), (source["identifier"] or source["name"]).lower())
        if key not in layouts:
            unknown.append(f"{source['source_name']}.{source['name']} ({'.'.join(key)})")
            continue
        columns = _columns(layouts[key].schema)
        stale = sorted(set(c.lower() for c in source.get("columns", {})) - set(columns))
        if stale:
            unknown_columns.append(f"{source['source_name']}.{source['name']}: {stale}")
        known[(source["database"].lower(), *key)] = columns
    if unknown:
        raise SqlCheckError(
            f"dbt source(s) with no known Iceberg schema: {', '.join(sorted(unknown))}. "
            "Declare the table's layout as SILVER_<NAME> in lakehouse/declarations/layouts.py "
            "(or as a CDC source in sources.yml) so its SQL can be checked."
        )
    if unknown_columns:
        raise SqlCheckError(
            "dbt source columns that the silver Iceberg tables do not have: "
            + "; ".join(sorted(unknown_columns))
        )
    return known


def _mapping(relations: dict[Relation, Columns]) -> MappingSchema:
    nested: dict[str, dict[str, dict[str, Columns]]] = {}
    for (catalog, schema, table), columns in relations.items():
        nested.setdefault(catalog, {}).setdefault(schema, {})[table] = columns
    return MappingSchema(nested, dialect="trino")


def _relation(node: dict[str, Any]) -> Relation | None:
    if not node.get("relation_name"):  # ephemeral models are inlined as CTEs
        return None
    return (node["database"].lower(), node["schema"].lower(), node["alias"].lower())


def _unknown_tables(query: exp.Expression, relations: dict[Relation, Columns]) -> list[str]:
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    missing = []
    for table in query.find_all(exp.Table):
        name = table.name.lower()
        if not table.db and name in ctes:
            continue
        key = (table.catalog.lower(), table.db.lower(), name)
        if key not in relations:
            missing.append(".".join(p for p in key if p))
    return sorted(set(missing))


class SqlResult(NamedTuple):
    outputs: Columns  # the statement's output columns and their Trino types
    problems: list[str]  # what Trino would refuse
    warnings: list[str]  # what sqlglot cannot vouch for


def _not_trino_syntax(sql: str) -> list[str]:
    """Syntax other engines accept, sqlglot's Trino reader tolerates, and Trino refuses."""
    tokens = sqlglot.Dialect.get_or_raise("trino").tokenize(sql)
    if any(t.token_type == TokenType.DCOLON for t in tokens):
        return ["'::' casts are not Trino SQL: use cast(x as type) or dbt.cast()"]
    return []


def check_sql(sql: str, relations: dict[Relation, Columns]) -> SqlResult:
    """Parse one compiled statement as Trino SQL and resolve every table and column in it."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="trino") if s is not None]
    except SqlglotError as exc:
        return SqlResult({}, [f"not valid Trino SQL: {exc}"], [])
    if len(statements) != 1:
        return SqlResult({}, [f"expected one statement, found {len(statements)}"], [])
    query = statements[0]
    problems = _not_trino_syntax(sql)
    problems += [f"unknown table {t}" for t in _unknown_tables(query, relations)]
    if problems:
        return SqlResult({}, problems, [])
    schema = _mapping(relations)
    try:
        qualified = qualify(query, dialect="trino", schema=schema, validate_qualify_columns=True)
    except SqlglotError as exc:
        return SqlResult({}, [str(exc)], [])
    if not isinstance(qualified, exp.Query):
        return SqlResult({}, [f"a model must be a query, not {qualified.key.upper()}"], [])
    annotated = annotate_types(qualified, schema=schema, dialect="trino")
    outputs = {}
    for select in annotated.selects:
        kind = select.type
        unknown = kind is None or kind.is_type(exp.DataType.Type.UNKNOWN)
        outputs[select.alias_or_name.lower()] = "unknown" if unknown else kind.sql("trino")
    warnings = sorted(
        {
            f"function {f.name}() is unknown to sqlglot's Trino dialect: check that Trino has it"
            for f in annotated.find_all(exp.Anonymous)
        }
    )
    return SqlResult(outputs, [], warnings)


def _in_dependency_order(manifest: dict[str, Any]) -> list[str]:
    nodes = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] in CHECKED_RESOURCES
    }
    graph = {
        uid: [d for d in node["depends_on"]["nodes"] if d in nodes] for uid, node in nodes.items()
    }
    return list(TopologicalSorter(graph).static_order())


def check_manifest(
    manifest: dict[str, Any],
    mode: str,
    report: Report,
    only: set[str] | None = None,
) -> None:
    """Check the compiled nodes of one manifest into ``report`` (models before their users)."""
    relations = source_schemas(manifest)
    for uid, columns in report.outputs.items():
        node = manifest["nodes"].get(uid)
        if node and (key := _relation(node)):
            relations[key] = columns
    failed = report.failed
    checked = report.checked.setdefault(mode, [])
    for uid in _in_dependency_order(manifest):
        node = manifest["nodes"][uid]
        if (only is not None and uid not in only) or uid in failed:
            continue  # not selected, or already reported by an earlier compile
        label = f"{node['resource_type']} {node['name']}"
        if mode == "incremental":
            label += " (incremental run)"
        if any(d in failed for d in node["depends_on"]["nodes"]):
            failed.add(uid)  # the upstream problem is reported; its columns are unknown
            report.skipped.append(node["name"])
            continue
        compiled = node.get("compiled_code")
        if compiled is None:
            report.problems.append(Problem(node["original_file_path"], label, "not compiled"))
            failed.add(uid)
            continue
        result = check_sql(compiled, relations)
        checked.append(uid)
        path = node.get("compiled_path")
        report.warnings += [Problem(node["original_file_path"], label, w) for w in result.warnings]
        if result.problems:
            failed.add(uid)
            report.problems += [
                Problem(node["original_file_path"], label, p, path) for p in result.problems
            ]
            continue
        if node["resource_type"] == "model":
            report.warnings += _undocumented(node, result.outputs, label)
            report.outputs.setdefault(uid, result.outputs)
            if key := _relation(node):
                relations.setdefault(key, result.outputs)


def _undocumented(node: dict[str, Any], columns: Columns, label: str) -> list[Problem]:
    """Columns described in YAML that the SQL does not produce (a renamed or misspelt doc)."""
    stale = sorted(set(c.lower() for c in node.get("columns", {})) - set(columns))
    yaml_file = (node.get("patch_path") or node["original_file_path"]).split("://")[-1]
    return [
        Problem(yaml_file, label, message)
        for message in (f"documents column {c!r}, which the model does not produce" for c in stale)
    ]


def _compile_command(project_dir: Path, mode: str, target: Path) -> list[str]:
    from lakehouse.dbt.project import dbt_executable

    return [
        dbt_executable(),
        "--no-populate-cache",
        "--quiet",
        "compile",
        "--no-introspect",
        "--target",
        "trino",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target-path",
        str(target),
        "--log-path",
        str(target),  # the two compiles run at once: one log each
        "--vars",
        json.dumps({**MODES[mode], "offline_compile": mode}),
    ]


def compile_offline(project_dir: Path) -> dict[str, dict[str, Any]]:
    """``dbt compile --target trino`` in each mode, with no server (both at once).

    Returns each mode's manifest, with every node's ``compiled_code`` and ``compiled_path``.
    """
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    targets = {mode: project_dir / "target" / "check-sql" / mode for mode in MODES}
    runs = {
        mode: subprocess.Popen(
            _compile_command(project_dir, mode, target),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=project_dir,
        )
        for mode, target in targets.items()
    }
    outputs = {mode: run.communicate()[0] for mode, run in runs.items()}
    for mode, run in runs.items():
        if run.returncode != 0:
            raise SqlCheckError(
                f"dbt compile --target trino ({mode}) failed:\n{outputs[mode].strip()}"
            )
    return {mode: json.loads((t / "manifest.json").read_text()) for mode, t in targets.items()}


def check_project(project_dir: Path | None = None) -> Report:
    """Compile the project for Trino offline and check every model and data test."""
    if project_dir is None:
        from lakehouse.dbt.project import DBT_PROJECT_DIR

        project_dir = DBT_PROJECT_DIR
    compiled = compile_offline(project_dir)
    report = Report()
    fresh, incremental = compiled["fresh"], compiled["incremental"]
    check_manifest(fresh, "fresh", report)
    changed = {
        uid
        for uid, node in incremental["nodes"].items()
        if node["resource_type"] == "model"
        and node.get("compiled_code") != fresh["nodes"].get(uid, {}).get("compiled_code")
    }
    check_manifest(incremental, "incremental", report, only=changed)
    return report
