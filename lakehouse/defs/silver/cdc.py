"""silver.<table> (current state) and silver.<table>_history (SCD2) of each CDC source."""

import dagster as dg
import pyarrow as pa
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.declarations.layouts import (
    QUARANTINE,
    cdc_silver_layouts,
    iceberg_type,
)
from lakehouse.declarations.sources import (
    CdcSource,
    sources,
)
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    evolve,
    existing_schema,
    new_columns_result,
    new_columns_spec,
    storable,
    withhold,
)
from lakehouse.defs.silver.score import quality_metadata
from lakehouse.ingest.debezium import UNAVAILABLE
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.quality.contracts import contract_for
from lakehouse.quality.policy import enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    RUN_ID_KEY,
    ensure_table,
    transaction,
    with_commit_retries,
)
from lakehouse.transforms.cdc import apply_changes, read_changelog
from lakehouse.transforms.masking import Masker, mask_rows
from resources.iceberg import IcebergCatalogResource


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
        check_specs=[new_columns_spec(["silver", source.name])],
    )
    def _asset(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
        freeze_loaded_heap()
        catalog = iceberg.load()
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        snapshot = bronze.current_snapshot()
        changes = read_changelog(bronze, source)
        # additive source changes evolve silver first; breaking ones stop here, naming the field
        additions = evolution.plan(
            f"silver.{source.name}",
            source.columns,
            existing_schema(catalog, f"silver.{source.name}"),
            (
                (f"LSN {c.event.lsn} (kafka {c.partition}/{c.offset})", c.event.after)
                for c in changes
                if c.event.op in ("c", "u", "r") and c.event.after is not None
            ),
            skip=UNAVAILABLE,
        )
        applied = apply_changes(changes, source.keys)
        existing = existing_schema(catalog, f"silver.{source.name}")
        evolved = [
            c
            for c in (*(existing.column_names if existing else ()), *additions)
            if c not in current_layout.schema.column_names
        ]
        # declared types win (a column classified after it evolved), masked PII is text
        retyped = {
            **{c: iceberg_type(t) for c, t in source.columns.items()},
            **{c: StringType() for c in evolved if c in source.pii},
        }
        current_table = evolve(
            ensure_table(catalog, f"silver.{source.name}", current_layout), additions, retyped
        )
        history_table = evolve(
            ensure_table(catalog, f"silver.{source.name}_history", history_layout),
            additions,
            retyped,
        )
        if additions:
            context.log.info(f"schema evolved: added {sorted(additions)} to silver.{source.name}")
        undeclared = set(current_table.schema().column_names) - set(
            current_layout.schema.column_names
        )
        withheld = source.withheld(undeclared)
        properties = {
            RUN_ID_KEY: context.run.run_id,
            "lakehouse.bronze-snapshot-id": str(snapshot.snapshot_id if snapshot else ""),
        }
        masker = Masker.from_settings()
        contract = contract_for(f"silver.{source.name}")
        current_schema = current_table.schema().as_arrow()
        masked, withheld_values = withhold(
            pa.Table.from_pylist(
                storable(mask_rows(applied.current, source.pii, masker), undeclared),
                schema=current_schema,
            ),
            withheld,
        )
        enforced = enforce(contract, masked.to_pandas())
        current_rows = pa.Table.from_pandas(
            enforced.passed, schema=current_schema, preserve_index=False
        )
        quarantine_rows = quarantine_table(
            quarantine_frame(enforced, source.name, context.run.run_id)
        )
        history_rows, _ = withhold(
            pa.Table.from_pylist(
                storable(mask_rows(applied.history, source.pii, masker), undeclared),
                schema=history_table.schema().as_arrow(),
            ),
            withheld,
        )

        def write() -> tuple[Table, Table, Table]:
            current = ensure_table(catalog, f"silver.{source.name}", current_layout)
            with transaction(current) as tx:
                tx.overwrite(current_rows, snapshot_properties=properties)
            history = ensure_table(catalog, f"silver.{source.name}_history", history_layout)
            with transaction(history) as tx:
                tx.overwrite(history_rows, snapshot_properties=properties)
            quarantine = ensure_table(catalog, contract.quarantine_table, QUARANTINE)
            with transaction(quarantine) as tx:
                tx.overwrite(quarantine_rows, snapshot_properties=properties)
            return current, history, quarantine

        current, history, quarantine = with_commit_retries(write)
        yield dg.MaterializeResult(
            asset_key=["silver", source.name],
            metadata={
                **table_metadata(current),
                **quality_metadata(contract, enforced),
                **evolution_metadata(additions, withheld, withheld_values),
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
        yield new_columns_result(["silver", source.name], source, evolved, withheld_values)

    return _asset


cdc_silver_assets = [cdc_silver_asset(s) for s in sources().cdc]
