"""What every silver build does with columns its source started sending.

Each build evolves its table first (columns the source started sending, added
metadata-only; breaking changes stop it naming the field) and withholds unclassified
new columns of a PII-bearing source, which the WARN check `new_columns_classified`
names: a column nobody reviewed must not reach silver or gold raw.
"""

import dagster as dg
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from lakehouse.declarations.sources import (
    Source,
)
from lakehouse.tables import evolution

NEW_COLUMNS_CHECK = "new_columns_classified"


def new_columns_spec(key: list[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NEW_COLUMNS_CHECK,
        asset=key,
        description="Columns the source started sending that sources.yml does not classify "
        "(as a declared column, under `plain` or under `pii`). Where the source carries PII "
        "(or says `new_columns: withhold`) they are withheld: added to this table but null "
        "until classified; bronze keeps the raw values. WARN while any is withheld.",
    )


def new_columns_result(
    key: list[str], source: Source, evolved: list[str], withheld: dict[str, int]
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=NEW_COLUMNS_CHECK,
        passed=not withheld,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"withheld until classified in sources.yml: {', '.join(withheld)}"
            if withheld
            else "every column is classified or allowed"
        ),
        metadata={
            "policy": str(source.new_column_policy),
            "evolved_columns": dg.MetadataValue.json(sorted(evolved)),
            "unclassified_columns": dg.MetadataValue.json(sorted(withheld)),
            "withheld_values": sum(withheld.values()),
            "withheld_values_per_column": dg.MetadataValue.json(withheld),
        },
    )


def withhold(rows: pa.Table, columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
    """``rows`` with ``columns`` nulled, and how many values each held."""
    counts = {}
    for column in columns:
        if column not in rows.column_names:
            continue
        index = rows.schema.get_field_index(column)
        field = rows.schema.field(index)
        counts[column] = rows.num_rows - rows[column].null_count
        rows = rows.set_column(index, field, pa.nulls(rows.num_rows, field.type))
    return rows, counts


def pii_as_text(rows: pa.Table, pii) -> pa.Table:
    """PII columns as Arrow's text of each value (pandas would turn 50 into 50.0)."""
    for column in pii:
        if column in rows.column_names and not pa.types.is_string(rows.schema.field(column).type):
            index = rows.schema.get_field_index(column)
            rows = rows.set_column(index, column, rows[column].cast(pa.string()))
    return rows


def evolve(table: Table, additions: dict, retyped: dict) -> Table:
    """New columns added and reclassified ones retyped: metadata-only commits."""
    return evolution.retype(evolution.apply(table, additions), retyped)


def evolution_metadata(additions: dict, withheld: list[str], counts: dict[str, int]) -> dict:
    return {
        "columns_added": dg.MetadataValue.json({n: str(t) for n, t in additions.items()}),
        "columns_withheld": dg.MetadataValue.json(withheld),
        "withheld_values": sum(counts.values()),
    }


def existing_schema(catalog, identifier: str):
    try:
        return catalog.load_table(identifier).schema()
    except NoSuchTableError:
        return None


def storable(rows: list[dict], columns: set[str]) -> list[dict]:
    if not columns:
        return rows
    return [
        {k: evolution.to_storable(v) if k in columns else v for k, v in row.items()} for row in rows
    ]
