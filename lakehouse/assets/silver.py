"""Silver: typed, validated, deduplicated Iceberg tables."""

from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.table import Table

from lakehouse.ingest.debezium import UNAVAILABLE, parse_change
from lakehouse.k8s import k8s_tags
from lakehouse.quality.contracts import contract_for
from lakehouse.quality.pii import Masker, mask_frame, mask_rows
from lakehouse.quality.policy import enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.quality.score import quality_metadata
from lakehouse.sources import CdcSource, DatabaseSource, LandingSource, Sources, sources
from lakehouse.tables import evolution
from lakehouse.tables.commits import RUN_ID_KEY, ensure_table, with_commit_retries
from lakehouse.tables.metadata import table_metadata
from lakehouse.tables.rebuilds import superseded_by
from lakehouse.tables.schemas import (
    QUARANTINE,
    SILVER_PAGE_VIEWS,
    cdc_silver_layouts,
    typed_silver_layout,
)
from lakehouse.transforms.cdc import OrderedChange, apply_changes
from lakehouse.transforms.page_views import build_page_views
from lakehouse.transforms.typed import latest_typed
from resources.iceberg import IcebergCatalogResource


@dg.multi_asset(
    op_tags=k8s_tags("arrow"),
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
    contract = contract_for("silver.page_views")
    masker = Masker.from_settings()
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    bronze_snapshot = bronze.current_snapshot()
    result = build_page_views(bronze.scan().to_arrow())

    # PII is masked before anything is stored, quarantine included
    rejects = result.rejects.assign(
        _source="clickstream",
        _raw=[masker.mask_json_text(t, source.pii) for t in result.rejects["_raw"]],
        _ingested_at=datetime.now(UTC),
        _run_id=context.run.run_id,
    )
    enforced = enforce(contract, mask_frame(result.silver.to_pandas(), source.pii, masker))
    silver_rows = pa.Table.from_pandas(
        enforced.passed, schema=SILVER_PAGE_VIEWS.arrow_schema(), preserve_index=False
    )
    quarantine_rows = quarantine_table(
        rejects, quarantine_frame(enforced, "clickstream", context.run.run_id)
    )
    # Silver is a function of bronze: a full overwrite per run is idempotent.
    properties = {
        RUN_ID_KEY: context.run.run_id,
        "lakehouse.bronze-snapshot-id": str(bronze_snapshot.snapshot_id if bronze_snapshot else ""),
    }

    built_from = bronze_snapshot.snapshot_id if bronze_snapshot else None
    newer: list[int] = []

    def write() -> tuple[Table, Table]:
        silver = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
        quarantine = ensure_table(catalog, "quarantine.page_views", QUARANTINE)
        if (snapshot := superseded_by(silver, bronze, built_from)) is not None:
            newer.append(snapshot)  # a concurrent run already built from newer bronze
            return silver, quarantine
        silver.overwrite(silver_rows, snapshot_properties=properties)
        quarantine.overwrite(quarantine_rows, snapshot_properties=properties)
        return silver, quarantine

    silver, quarantine = with_commit_retries(write)
    if newer:
        context.log.warning(
            f"silver.page_views was already rebuilt from bronze snapshot {newer[0]}, newer "
            f"than this run's {built_from}: nothing written"
        )
    yield dg.MaterializeResult(
        asset_key=["silver", "page_views"],
        metadata={
            **table_metadata(silver),
            **quality_metadata(contract, enforced, earlier_rejects=len(rejects)),
            "rows_written": 0 if newer else silver_rows.num_rows,
            "bronze_page_view_rows": result.bronze_page_view_rows,
            "duplicates_removed": result.duplicates_removed,
            "rows_quarantined": quarantine_rows.num_rows,
            "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
            "superseded_by_bronze_snapshot": str(newer[0]) if newer else "",
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "page_views"],
        metadata={**table_metadata(quarantine), "rows_quarantined": quarantine_rows.num_rows},
    )


def cdc_silver_asset(source: CdcSource) -> dg.AssetsDefinition:
    """silver.<name> (current state) and silver.<name>_history (SCD2) from the changelog."""
    current_layout, history_layout = cdc_silver_layouts(source.columns)
    bronze_key = ["bronze", source.bronze_name]

    @dg.multi_asset(
        name=f"silver_{source.name}",
        op_tags=k8s_tags("arrow"),
        specs=[
            dg.AssetSpec(
                ["silver", source.name],
                group_name="silver",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Current state of {source.topic}: inserts, updates and deletes "
                "applied in source (LSN) order; unchanged TOAST values carried forward.",
                automation_condition=dg.AutomationCondition.eager(),
                metadata={"lakehouse/keys": list(source.keys)},
            ),
            dg.AssetSpec(
                ["silver", f"{source.name}_history"],
                group_name="silver",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Every version of each {source.name} row (SCD type 2): "
                "valid_from / valid_to / is_current; a delete closes the last version.",
                automation_condition=dg.AutomationCondition.eager(),
            ),
            dg.AssetSpec(
                ["quarantine", source.name],
                group_name="quarantine",
                kinds={"iceberg"},
                deps=[bronze_key],
                description=f"Current {source.name} rows that broke a quarantine rule of the "
                f"silver.{source.name} contract (rule and reason per row, PII masked).",
                automation_condition=dg.AutomationCondition.eager(),
            ),
        ],
    )
    def _asset(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
        catalog = iceberg.load()
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        snapshot = bronze.current_snapshot()
        changes = read_changelog(bronze, source)
        # additive source changes evolve silver first; breaking ones stop here, naming the field
        additions = evolution.plan(
            f"silver.{source.name}",
            source.columns,
            _existing_schema(catalog, f"silver.{source.name}"),
            (
                (f"LSN {c.event.lsn} (kafka {c.partition}/{c.offset})", c.event.after)
                for c in changes
                if c.event.op in ("c", "u", "r") and c.event.after is not None
            ),
            skip=UNAVAILABLE,
        )
        applied = apply_changes(changes, source.keys)
        current_table = evolution.apply(
            ensure_table(catalog, f"silver.{source.name}", current_layout), additions
        )
        history_table = evolution.apply(
            ensure_table(catalog, f"silver.{source.name}_history", history_layout), additions
        )
        if additions:
            context.log.info(f"schema evolved: added {sorted(additions)} to silver.{source.name}")
        undeclared = set(current_table.schema().column_names) - set(
            current_layout.schema.column_names
        )
        properties = {
            RUN_ID_KEY: context.run.run_id,
            "lakehouse.bronze-snapshot-id": str(snapshot.snapshot_id if snapshot else ""),
        }
        masker = Masker.from_settings()
        contract = contract_for(f"silver.{source.name}")
        current_schema = current_table.schema().as_arrow()
        masked = pa.Table.from_pylist(
            _storable(mask_rows(applied.current, source.pii, masker), undeclared),
            schema=current_schema,
        )
        enforced = enforce(contract, masked.to_pandas())
        current_rows = pa.Table.from_pandas(
            enforced.passed, schema=current_schema, preserve_index=False
        )
        quarantine_rows = quarantine_table(
            quarantine_frame(enforced, source.name, context.run.run_id)
        )
        history_rows = pa.Table.from_pylist(
            _storable(mask_rows(applied.history, source.pii, masker), undeclared),
            schema=history_table.schema().as_arrow(),
        )

        def write() -> tuple[Table, Table, Table]:
            current = ensure_table(catalog, f"silver.{source.name}", current_layout)
            current.overwrite(current_rows, snapshot_properties=properties)
            history = ensure_table(catalog, f"silver.{source.name}_history", history_layout)
            history.overwrite(history_rows, snapshot_properties=properties)
            quarantine = ensure_table(catalog, contract.quarantine_table, QUARANTINE)
            quarantine.overwrite(quarantine_rows, snapshot_properties=properties)
            return current, history, quarantine

        current, history, quarantine = with_commit_retries(write)
        yield dg.MaterializeResult(
            asset_key=["silver", source.name],
            metadata={
                **table_metadata(current),
                **quality_metadata(contract, enforced),
                "columns_added": dg.MetadataValue.json(
                    {name: str(ftype) for name, ftype in additions.items()}
                ),
                "rows_quarantined": quarantine_rows.num_rows,
                "changes_in_log": len(changes),
                "changes_applied": applied.events_applied,
                "duplicates_skipped": applied.duplicates_skipped,
                "toast_values_carried": applied.toast_values_carried,
                "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
            },
        )
        yield dg.MaterializeResult(
            asset_key=["silver", f"{source.name}_history"],
            metadata={**table_metadata(history), "versions": len(applied.history)},
        )
        yield dg.MaterializeResult(
            asset_key=["quarantine", source.name],
            metadata={**table_metadata(quarantine), "rows_quarantined": quarantine_rows.num_rows},
        )

    return _asset


def _existing_schema(catalog, identifier: str):
    try:
        return catalog.load_table(identifier).schema()
    except NoSuchTableError:
        return None


def _storable(rows: list[dict], columns: set[str]) -> list[dict]:
    if not columns:
        return rows
    return [
        {k: evolution.to_storable(v) if k in columns else v for k, v in row.items()} for row in rows
    ]


def read_changelog(bronze: Table, source: CdcSource) -> list[OrderedChange]:
    """The bronze changelog of ``source`` as ordered changes (tombstones left out)."""
    log = bronze.scan(
        selected_fields=("op", "payload", "_kafka_partition", "_kafka_offset")
    ).to_arrow()
    return [
        OrderedChange(parse_change(payload.encode(), source.columns), partition, offset)
        for op, payload, partition, offset in zip(
            log["op"].to_pylist(),
            log["payload"].to_pylist(),
            log["_kafka_partition"].to_pylist(),
            log["_kafka_offset"].to_pylist(),
            strict=True,
        )
        if op != "tombstone"
    ]


def cdc_silver_assets(sources: Sources) -> list[dg.AssetsDefinition]:
    return [cdc_silver_asset(s) for s in sources.cdc]


def typed_silver_asset(source: DatabaseSource | LandingSource) -> dg.AssetsDefinition:
    """silver.<name>: the latest version of each key, every declared column typed."""
    if isinstance(source, DatabaseSource):
        order_by = ["_ingested_at", source.watermark]
        origin = f"table {source.table} (read by watermark {source.watermark})"
    else:
        order_by = ["_ingested_at", "_file", "_row"]
        origin = f"{source.format} files under s3://<landing>/{source.key_prefix}"
    layout = typed_silver_layout(source.columns)

    @dg.asset(
        key=["silver", source.name],
        group_name="silver",
        kinds={"iceberg", "pyarrow"},
        deps=[["bronze", source.bronze_name]],
        description=f"Current rows of {origin}: declared types applied, one row per "
        f"{', '.join(source.keys)} (the latest arrival wins).",
        automation_condition=dg.AutomationCondition.eager(),
        metadata={"lakehouse/keys": list(source.keys)},
        op_tags=k8s_tags("arrow"),
    )
    def _asset(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
        catalog = iceberg.load()
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        snapshot = bronze.current_snapshot()
        rows = bronze.scan(selected_fields=(*source.columns, *order_by)).to_arrow()
        result = latest_typed(rows, source.columns, source.keys, order_by)
        silver_rows = result.silver
        if source.pii:  # masked on entry to silver, like every other silver table
            masked = mask_frame(silver_rows.to_pandas(), source.pii, Masker.from_settings())
            silver_rows = pa.Table.from_pandas(
                masked, schema=result.silver.schema, preserve_index=False
            )
        properties = {
            RUN_ID_KEY: context.run.run_id,
            "lakehouse.bronze-snapshot-id": str(snapshot.snapshot_id if snapshot else ""),
        }

        def write() -> Table:
            table = ensure_table(catalog, f"silver.{source.name}", layout)
            table.overwrite(silver_rows, snapshot_properties=properties)
            return table

        table = with_commit_retries(write)
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table),
                "bronze_rows": result.bronze_rows,
                "superseded_versions": result.superseded,
                "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
            }
        )

    return _asset


def typed_silver_assets(sources: Sources) -> list[dg.AssetsDefinition]:
    return [typed_silver_asset(s) for s in (*sources.database, *sources.landing)]
