"""Materialization metadata read off an Iceberg table, in the keys the Dagster UI understands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg

if TYPE_CHECKING:
    from pyiceberg.table import Table


def table_metadata(table: Table) -> dict[str, Any]:
    """Row count, column schema (with each column's description), snapshot, files and
    bytes of the table's current snapshot."""
    snapshot = table.current_snapshot()
    summary = snapshot.summary if snapshot and snapshot.summary else None

    def total(key: str) -> int:
        value = summary[key] if summary else None
        return int(value) if value is not None else 0

    from lakehouse.dbt.docs import column_descriptions

    described = column_descriptions(".".join(table.name()[-2:]))
    columns = [
        dg.TableColumn(
            name=field.name,
            type=str(field.field_type),
            description=field.doc or described.get(field.name),
            constraints=dg.TableColumnConstraints(nullable=not field.required),
        )
        for field in table.schema().fields
    ]
    return {
        "dagster/table_name": ".".join(table.name()[-2:]),
        "dagster/row_count": total("total-records"),
        "dagster/column_schema": dg.TableSchema(columns=columns),
        "snapshot_id": str(snapshot.snapshot_id) if snapshot else "none",
        "data_files": total("total-data-files"),
        "bytes": total("total-files-size"),
        "location": dg.MetadataValue.path(table.location()),
    }
