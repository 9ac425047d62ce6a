"""Column-level lineage of the gold models, for the asset's "Column lineage" tab.

dagster-dbt derives column lineage from the warehouse's catalog through a second
adapter connection, which the local in-memory DuckDB does not have (the same reason
as for row counts, see ``lakehouse/defs/gold/assets.py``). The Iceberg catalog knows
every input's columns, so the model's compiled SQL is resolved against it with
sqlglot here instead. Staging and intermediate models are ephemeral CTEs, so a gold
column traces straight to the silver (or upstream gold) columns it is computed from;
a column computed from no input column (``count(*)``) has no dependencies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg
from sqlglot import exp, parse_one
from sqlglot.errors import SqlglotError
from sqlglot.lineage import lineage
from sqlglot.schema import MappingSchema

# (namespace, table) -> column names, or None when the table is not in the catalog
ColumnsOf = Callable[[str, str], Sequence[str] | None]


def column_lineage(compiled_sql: str, columns_of: ColumnsOf, dialect: str) -> dg.TableColumnLineage:
    """Which input columns each output column of ``compiled_sql`` is computed from.

    Inputs are named by asset key: our Iceberg tables' asset keys are their
    ``namespace.table`` identifiers. Raises :class:`SqlglotError` on SQL sqlglot cannot
    resolve; the caller decides whether lineage is worth failing a run for (it is not).
    """
    tree = parse_one(compiled_sql, dialect=dialect)
    schema = MappingSchema(dialect=dialect)
    for table in tree.find_all(exp.Table):
        if not table.db:
            continue  # a CTE reference
        columns = columns_of(table.db, table.name)
        if columns is None:
            raise SqlglotError(f"{table.db}.{table.name} is not in the Iceberg catalog")
        schema.add_table(table, {column: "text" for column in columns}, dialect=dialect)
    deps_by_column: dict[str, list[dg.TableColumnDep]] = {}
    for column, root in lineage(None, tree, schema, dialect=dialect).items():
        deps = set()
        for node in root.walk():
            table = node.expression.find(exp.Table) if not node.downstream else None
            if table is not None and table.db:
                deps.add((table.db, table.name, node.name.rsplit(".", 1)[-1].strip('"')))
        deps_by_column[column] = [
            dg.TableColumnDep(asset_key=dg.AssetKey([db, name]), column_name=col)
            for db, name, col in sorted(deps)
        ]
    return dg.TableColumnLineage(deps_by_column=deps_by_column)
