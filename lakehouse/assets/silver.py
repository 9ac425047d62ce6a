"""Silver: typed, validated, deduplicated Iceberg tables."""

from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
from pyiceberg.table import Table

from lakehouse.sources import sources
from lakehouse.tables.commits import RUN_ID_KEY, ensure_table, with_commit_retries
from lakehouse.tables.metadata import table_metadata
from lakehouse.tables.schemas import QUARANTINE, SILVER_PAGE_VIEWS
from lakehouse.transforms.page_views import build_page_views
from resources.iceberg import IcebergCatalogResource


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ["silver", "page_views"],
            group_name="silver",
            kinds={"iceberg", "pandas"},
            deps=[["bronze", "clickstream"]],
            description="One row per page view: typed timestamps, deduplicated on event_id, "
            "partitioned by day(event_ts).",
            automation_condition=dg.AutomationCondition.eager(),
        ),
        dg.AssetSpec(
            ["quarantine", "page_views"],
            group_name="quarantine",
            kinds={"iceberg"},
            deps=[["bronze", "clickstream"]],
            description="Page views that failed a silver rule (rule and reason per row).",
            automation_condition=dg.AutomationCondition.eager(),
        ),
    ],
)
def silver_page_views(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
    catalog = iceberg.load()
    source = sources().kafka_source("clickstream")
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    bronze_snapshot = bronze.current_snapshot()
    result = build_page_views(bronze.scan().to_arrow())

    rejects = result.rejects.assign(
        _source="clickstream",
        _ingested_at=datetime.now(UTC),
        _run_id=context.run.run_id,
    )
    quarantine_rows = pa.Table.from_pandas(
        rejects.reindex(columns=[f.name for f in QUARANTINE.arrow_schema()]),
        schema=QUARANTINE.arrow_schema(),
        preserve_index=False,
    )
    # Silver is a function of bronze: a full overwrite per run is idempotent.
    properties = {
        RUN_ID_KEY: context.run.run_id,
        "lakehouse.bronze-snapshot-id": str(bronze_snapshot.snapshot_id if bronze_snapshot else ""),
    }

    def write() -> tuple[Table, Table]:
        silver = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
        silver.overwrite(result.silver, snapshot_properties=properties)
        quarantine = ensure_table(catalog, "quarantine.page_views", QUARANTINE)
        quarantine.overwrite(quarantine_rows, snapshot_properties=properties)
        return silver, quarantine

    silver, quarantine = with_commit_retries(write)
    rows = result.silver.num_rows
    quality = rows / max(1, rows + len(rejects))
    yield dg.MaterializeResult(
        asset_key=["silver", "page_views"],
        metadata={
            **table_metadata(silver),
            "rows_written": rows,
            "bronze_page_view_rows": result.bronze_page_view_rows,
            "duplicates_removed": result.duplicates_removed,
            "rows_quarantined": len(rejects),
            "quality_score": dg.FloatMetadataValue(round(quality, 4)),
            "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "page_views"],
        metadata={**table_metadata(quarantine), "rows_quarantined": len(rejects)},
    )
