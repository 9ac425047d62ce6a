"""Run history as data: ``ops.pipeline_runs`` and ``ops.asset_materializations``.

On-call needs to ask "how often did this job fail this week, and how long does it take"
in SQL, next to the data, not in Dagster's own storage (which a Helm upgrade may reset
and which dbt cannot read). A run status sensor (``lakehouse/defs/ops``) turns each
finished run into one ``pipeline_runs`` row and one ``asset_materializations`` row per
materialization, through ``record_run``; this module knows nothing of Dagster.

Exactly once per run: the sensor's cursor is only a hint (a sensor that dies after the
commit and before it saves its cursor sees the run again). Each table's commit first
looks the run id up in that table and writes nothing if it is there, and a commit that
loses a race (``commit.retry.num-retries=0``) looks again before retrying. The
materializations are written before the run row, so a run row means the run is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.expressions import EqualTo
from pyiceberg.schema import Schema
from pyiceberg.types import DoubleType, IntegerType, LongType, StringType, TimestamptzType

from lakehouse.declarations.layouts import TableLayout, _day_spec, _fields
from lakehouse.tables.commits import RUN_ID_KEY, ensure_table, transaction, with_commit_retries

PIPELINE_RUNS = "ops.pipeline_runs"
ASSET_MATERIALIZATIONS = "ops.asset_materializations"
# run ids are looked up on every write: keep their whole value in the file statistics
_FULL_RUN_ID_METRICS = {"write.metadata.metrics.column.run_id": "full"}


def _layout(columns: list[tuple[str, object]], day_column: str) -> TableLayout:
    schema = Schema(*_fields(*columns))
    spec = _day_spec(schema, day_column, f"{day_column}_day")
    return TableLayout(schema, spec).with_properties(_FULL_RUN_ID_METRICS)


PIPELINE_RUNS_LAYOUT = _layout(
    [
        ("run_id", StringType()),
        ("job", StringType()),
        ("partition", StringType()),  # a single partition key, or null
        ("partition_range_start", StringType()),  # a backfill's window, or null
        ("partition_range_end", StringType()),
        ("status", StringType()),  # success, failure, canceled
        ("started_at", TimestamptzType()),  # null when canceled before it started
        ("ended_at", TimestamptzType()),
        ("duration_s", DoubleType()),
        ("assets_materialized", IntegerType()),
        ("rows_written", LongType()),
        ("rows_quarantined", LongType()),
        ("rows_written_by_asset", StringType()),  # JSON {asset key: rows}
        ("rows_quarantined_by_asset", StringType()),
        ("quality_scores", StringType()),  # JSON {asset key: score}
        ("error_class", StringType()),
        ("error_message", StringType()),
        # the earliest freshness deadline it had to meet: an asset's previous update plus
        # its freshness check's window (null without a checked asset or an earlier update)
        ("freshness_due_by", TimestamptzType()),
        ("recorded_at", TimestamptzType()),
    ],
    "ended_at",
)

ASSET_MATERIALIZATIONS_LAYOUT = _layout(
    [
        ("run_id", StringType()),
        ("job", StringType()),
        ("asset_key", StringType()),
        ("partition", StringType()),
        ("materialized_at", TimestamptzType()),
        ("rows_written", LongType()),
        ("rows_quarantined", LongType()),
        ("row_count", LongType()),  # the table's rows after it (dagster/row_count)
        ("quality_score", DoubleType()),
        ("snapshot_id", StringType()),
        ("recorded_at", TimestamptzType()),
    ],
    "materialized_at",
)

LAYOUTS = {
    PIPELINE_RUNS: PIPELINE_RUNS_LAYOUT,
    ASSET_MATERIALIZATIONS: ASSET_MATERIALIZATIONS_LAYOUT,
}


def ensure_history_tables(catalog: Catalog) -> None:
    """Create both tables, each with a first (empty) snapshot, so that gold's health
    model reads them before the first run has finished."""
    for identifier, layout in LAYOUTS.items():
        table = ensure_table(catalog, identifier, layout)
        if table.current_snapshot() is None:

            def first(identifier: str = identifier, layout: TableLayout = layout) -> None:
                table = catalog.load_table(identifier)
                if table.current_snapshot() is None:
                    with transaction(table) as tx:
                        tx.append(layout.arrow_schema().empty_table())

            with_commit_retries(first)


def _append_once(
    catalog: Catalog, identifier: str, run_id: str, rows: Sequence[dict[str, Any]]
) -> bool:
    """Append ``rows`` unless the table already holds rows of ``run_id``; True if written."""
    layout = LAYOUTS[identifier]
    schema = layout.arrow_schema()
    data = pa.Table.from_pylist(list(rows), schema=schema)

    def attempt() -> bool:
        table = ensure_table(catalog, identifier, layout)
        seen = table.scan(row_filter=EqualTo("run_id", run_id), selected_fields=("run_id",))
        if seen.to_arrow().num_rows:
            return False
        with transaction(table) as tx:
            tx.append(data, snapshot_properties={RUN_ID_KEY: run_id})
        return True

    return with_commit_retries(attempt)


def record_run(
    catalog: Catalog,
    run: dict[str, Any],
    materializations: Sequence[dict[str, Any]],
    now: datetime,
) -> bool:
    """Write one finished run (a ``PIPELINE_RUNS_LAYOUT`` row) and its materializations,
    each exactly once; True if the run row was written now, False if it already was."""
    run_id = run["run_id"]
    if materializations:
        _append_once(
            catalog,
            ASSET_MATERIALIZATIONS,
            run_id,
            [{**m, "run_id": run_id, "recorded_at": now} for m in materializations],
        )
    return _append_once(catalog, PIPELINE_RUNS, run_id, [{**run, "recorded_at": now}])
