"""Schema evolution of silver tables fed by a source whose schema can change.

Additive changes flow: a column the source starts sending (a new optional field)
is added to the Iceberg table in the same run with ``update_schema`` (metadata
only, no data file is rewritten) and filled from then on; older rows read it as null.

Breaking changes stop the source: a declared column that disappears from the
source's rows, or values that no longer fit the declared type (a type narrowing or
change), raise :class:`SchemaBreak` naming the column, what was declared, what
arrived and where. Nothing is written and nothing is quarantined: the raw records
stay in bronze, and the run resumes once ``sources.yml`` (or the source) is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IcebergType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestamptzType,
)

from lakehouse.declarations.layouts import iceberg_type

INT32 = (-(2**31), 2**31 - 1)


class SchemaBreak(RuntimeError):
    """A breaking change in a source's schema; the message names the field."""


def fits(value: Any, ftype: IcebergType) -> bool:
    """Whether ``value`` (as decoded from the source) can be stored as ``ftype`` losslessly."""
    if isinstance(ftype, StringType):
        return isinstance(value, str)
    if isinstance(ftype, BooleanType):
        return isinstance(value, bool)
    if isinstance(ftype, IntegerType):
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (INT32[0] <= value <= INT32[1])
        )
    if isinstance(ftype, LongType):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(ftype, DoubleType):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(ftype, DateType):
        return isinstance(value, date) and not isinstance(value, datetime)
    if isinstance(ftype, TimestamptzType):
        return isinstance(value, datetime)
    if isinstance(ftype, DecimalType):
        if not isinstance(value, Decimal | int) or isinstance(value, bool):
            return False
        exponent = Decimal(value).as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        digits = len(Decimal(value).as_tuple().digits) - scale
        return scale <= ftype.scale and digits <= ftype.precision - ftype.scale
    return True


def infer_type(values: Iterable[Any]) -> IcebergType | None:
    """The narrowest Iceberg type holding every value of a new column (None: all null)."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return BooleanType()
    if kinds <= {int}:
        return LongType()
    if kinds <= {int, float}:
        return DoubleType()
    if kinds <= {Decimal, int}:
        return DecimalType(38, 9)
    if kinds == {date}:
        return DateType()
    if kinds <= {datetime}:
        return TimestamptzType()
    return StringType()


def to_storable(value: Any) -> Any:
    """Objects and arrays in a new column are kept as JSON text."""
    return (
        json.dumps(value, sort_keys=True, default=str) if isinstance(value, dict | list) else value
    )


def plan(
    table_name: str,
    declared: Mapping[str, str],
    current: Schema | None,
    rows: Iterable[tuple[Any, Mapping[str, Any]]],
    skip: Any = None,
) -> dict[str, IcebergType]:
    """Columns to add, after checking every row against the declared and existing columns.

    ``rows`` are (position, row) pairs, the position only for the error message;
    ``skip`` is a placeholder value that carries no type (an unchanged TOAST column).
    """
    known: dict[str, IcebergType] = {c: iceberg_type(t) for c, t in declared.items()}
    if current is not None:
        for field in current.fields:
            known.setdefault(field.name, field.field_type)
    new_values: dict[str, list[Any]] = {}
    for position, row in rows:
        missing = [c for c in declared if c not in row]
        if missing:
            raise SchemaBreak(
                f"{table_name}: declared column {missing[0]!r} is missing from the source's "
                f"row at {position} (dropped column?). Nothing was written; remove it from "
                f"sources.yml if the drop is intended, then run again."
            )
        for column, value in row.items():
            if value is None or value is skip:
                continue
            ftype = known.get(column)
            if ftype is None:
                new_values.setdefault(column, []).append(to_storable(value))
            elif not fits(value, ftype):
                raise SchemaBreak(
                    f"{table_name}: column {column!r} is {ftype} but the source sent "
                    f"{type(value).__name__} {str(value)[:60]!r} at {position} (type narrowed "
                    f"or changed). Nothing was written; declare the new type in sources.yml "
                    f"(a widening is applied without rewrite) or fix the source."
                )
    additions = {}
    for column, values in new_values.items():
        ftype = infer_type(values)
        if ftype is not None:
            additions[column] = ftype
    return additions


def apply(table: Table, additions: Mapping[str, IcebergType]) -> Table:
    """Add the new optional columns to ``table`` (metadata-only commit); return it reloaded."""
    if not additions:
        return table
    fields = [
        NestedField(field_id=i, name=name, field_type=ftype, required=False)
        for i, (name, ftype) in enumerate(additions.items(), start=1)
    ]
    with table.update_schema() as update:
        update.union_by_name(Schema(*fields))
    return table.refresh()


def promotable(old: IcebergType, new: IcebergType) -> bool:
    """Iceberg's widening promotions: applied in place, no data file rewritten."""
    if old == new:
        return True
    if isinstance(old, IntegerType) and isinstance(new, LongType):
        return True
    if isinstance(old, DecimalType) and isinstance(new, DecimalType):
        return old.scale == new.scale and old.precision <= new.precision
    return False


def retype(table: Table, wanted: Mapping[str, IcebergType]) -> Table:
    """Give columns of a rebuilt-every-run table (silver) the type sources.yml now declares.

    A widening is promoted in place. Anything else (a string column, evolved before the
    user classified it, now declared a decimal or hashed as PII) is dropped and added
    again under a new field id: metadata only, and the run's full overwrite then
    replaces every data file that held the old column.
    """
    current = {f.name: f.field_type for f in table.schema().fields}
    promote = {c: t for c, t in wanted.items() if c in current and current[c] != t}
    if not promote:
        return table
    replace = {c: t for c, t in promote.items() if not promotable(current[c], t)}
    with table.update_schema() as update:
        for column, ftype in promote.items():
            if column in replace:
                update.delete_column(column)
            else:
                update.update_column(column, field_type=ftype)
    if replace:
        with table.update_schema() as update:
            for column, ftype in replace.items():
                update.add_column(column, ftype, required=False)
    return table.refresh()


# Bronze keeps values as text; the type a column had in the source (when the source
# says, e.g. PostgreSQL's catalog) travels in the bronze field's doc, for silver.
TYPE_DOC = "lakehouse.type="


def add_text_columns(table: Table, columns: Mapping[str, str | None]) -> Table:
    """Add raw-text columns to a bronze table (metadata only), each with its source type."""
    existing = set(table.schema().column_names)
    fresh = {c: t for c, t in columns.items() if c not in existing}
    if not fresh:
        return table
    with table.update_schema() as update:
        for column, declared in fresh.items():
            doc = f"{TYPE_DOC}{declared}" if declared else None
            update.add_column(column, StringType(), doc=doc, required=False)
    return table.refresh()


def text_type(field: NestedField) -> str:
    """The declared type of an evolved bronze text column: its source type, else string."""
    doc = field.doc or ""
    return doc[len(TYPE_DOC) :] if doc.startswith(TYPE_DOC) else "string"
