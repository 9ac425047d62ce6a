"""Silver: typed, validated, deduplicated Iceberg tables.

Each build evolves its table first (columns the source started sending, added
metadata-only; breaking changes stop it naming the field) and withholds unclassified
new columns of a PII-bearing source, which the WARN check `new_columns_classified`
names: a column nobody reviewed must not reach silver or gold raw.
"""

import json
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.heap import freeze_loaded_heap
from lakehouse.ingest.debezium import UNAVAILABLE, parse_change
from lakehouse.ingest.records import json_object
from lakehouse.k8s import k8s_tags
from lakehouse.quality.contracts import contract_for
from lakehouse.quality.pii import Masker, PiiPolicy, mask_frame, mask_rows
from lakehouse.quality.policy import enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.quality.score import quality_metadata
from lakehouse.sources import (
    CdcSource,
    DatabaseSource,
    KafkaSource,
    LandingSource,
    Source,
    Sources,
    sources,
)
from lakehouse.tables import evolution
from lakehouse.tables.commits import (
    RUN_ID_KEY,
    conform,
    ensure_table,
    transaction,
    with_commit_retries,
)
from lakehouse.tables.evolution import SchemaBreak
from lakehouse.tables.metadata import table_metadata
from lakehouse.tables.rebuilds import superseded_by
from lakehouse.tables.schemas import (
    QUARANTINE,
    SILVER_PAGE_VIEWS,
    cdc_silver_layouts,
    iceberg_type,
    typed_silver_layout,
)
from lakehouse.transforms.cdc import OrderedChange, apply_changes
from lakehouse.transforms.page_views import build_page_views, vanished_fields
from lakehouse.transforms.typed import latest_typed
from resources.iceberg import IcebergCatalogResource

NEW_COLUMNS_CHECK = "new_columns_classified"


def _new_columns_spec(key: list[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NEW_COLUMNS_CHECK,
        asset=key,
        description="Columns the source started sending that sources.yml does not classify "
        "(as a declared column, under `plain` or under `pii`). Where the source carries PII "
        "(or says `new_columns: withhold`) they are withheld: added to this table but null "
        "until classified; bronze keeps the raw values. WARN while any is withheld.",
    )


def _new_columns_result(
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


def _withhold(rows: pa.Table, columns: list[str]) -> tuple[pa.Table, dict[str, int]]:
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


def _pii_as_text(rows: pa.Table, pii) -> pa.Table:
    """PII columns as Arrow's text of each value (pandas would turn 50 into 50.0)."""
    for column in pii:
        if column in rows.column_names and not pa.types.is_string(rows.schema.field(column).type):
            index = rows.schema.get_field_index(column)
            rows = rows.set_column(index, column, rows[column].cast(pa.string()))
    return rows


def _evolve(table: Table, additions: dict, retyped: dict) -> Table:
    """New columns added and reclassified ones retyped: metadata-only commits."""
    return evolution.retype(evolution.apply(table, additions), retyped)


def _evolution_metadata(additions: dict, withheld: list[str], counts: dict[str, int]) -> dict:
    return {
        "columns_added": dg.MetadataValue.json({n: str(t) for n, t in additions.items()}),
        "columns_withheld": dg.MetadataValue.json(withheld),
        "withheld_values": sum(counts.values()),
    }


def _check_required_fields(catalog, bronze: Table, source: KafkaSource) -> None:
    """A required field that no event of the newest bronze batch carries any more.

    Bronze quarantines each event without a required field, one by one; when a whole
    batch lacks it, the producer dropped the field: the source stops, naming it.
    """
    snapshot = bronze.current_snapshot()
    run_id = snapshot.summary.additional_properties.get(RUN_ID_KEY) if snapshot else None
    if not run_id or not source.required:
        return
    batch = EqualTo("_run_id", run_id)
    events = [
        json.loads(p)
        for p in bronze.scan(row_filter=batch, selected_fields=("payload",))
        .to_arrow()["payload"]
        .to_pylist()
    ]
    quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
    for raw in quarantine.scan(row_filter=batch, selected_fields=("_raw",)).to_arrow()["_raw"]:
        event = json_object(raw.as_py())
        if event is not None:  # not a JSON object: quarantined for that, says nothing of fields
            events.append(event)
    objects = [e for e in events if isinstance(e, dict)]
    carried = [{k for k, v in e.items() if v not in (None, "")} for e in objects]
    gone = vanished_fields(carried, source.required)
    if gone:
        raise SchemaBreak(
            f"silver.page_views: required field {gone[0]!r} is missing from all "
            f"{len(objects)} events of the newest bronze batch (run {run_id}; they are in "
            f"{source.quarantine_table}): the producer dropped it? Nothing was written; "
            "restore the field, or make it optional in sources.yml and replay the quarantine."
        )


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
    check_specs=[_new_columns_spec(["silver", "page_views"])],
)
def silver_page_views(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
    freeze_loaded_heap()
    catalog = iceberg.load()
    source = sources().kafka_source("clickstream")
    contract = contract_for("silver.page_views")
    masker = Masker.from_settings()
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    bronze_snapshot = bronze.current_snapshot()
    # breaking changes stop here, before anything is written, naming the field
    _check_required_fields(catalog, bronze, source)
    result = build_page_views(
        bronze.scan().to_arrow(),
        declared=source.columns.values(),
        current=_existing_schema(catalog, "silver.page_views"),
    )
    withheld = source.withheld(result.evolved)
    raw_policy = {**source.pii, **{c: PiiPolicy.REDACT for c in withheld}}

    # PII is masked before anything is stored, quarantine included
    rejects = result.rejects.assign(
        _source="clickstream",
        _raw=[masker.mask_json_text(t, raw_policy) for t in result.rejects["_raw"]],
        _ingested_at=datetime.now(UTC),
        _run_id=context.run.run_id,
    )
    silver_table = _evolve(
        ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS),
        result.additions,
        {c: StringType() for c in result.evolved if c in source.pii},
    )
    if result.additions:
        context.log.info(f"schema evolved: added {sorted(result.additions)} to silver.page_views")
    unmasked, withheld_values = _withhold(result.silver, withheld)
    unmasked = _pii_as_text(unmasked, source.pii)
    enforced = enforce(contract, mask_frame(unmasked.to_pandas(), source.pii, masker))
    silver_rows = pa.Table.from_pandas(
        enforced.passed, schema=silver_table.schema().as_arrow(), preserve_index=False
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
        if (snapshot := superseded_by(silver, bronze, bronze_snapshot)) is not None:
            newer.append(snapshot)  # a concurrent run already built from newer bronze
            return silver, quarantine
        with transaction(silver) as tx:
            tx.overwrite(silver_rows, snapshot_properties=properties)
        with transaction(quarantine) as tx:
            tx.overwrite(quarantine_rows, snapshot_properties=properties)
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
            **_evolution_metadata(result.additions, withheld, withheld_values),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "page_views"],
        metadata={**table_metadata(quarantine), "rows_quarantined": quarantine_rows.num_rows},
    )
    yield _new_columns_result(["silver", "page_views"], source, result.evolved, withheld_values)


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
        check_specs=[_new_columns_spec(["silver", source.name])],
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
            _existing_schema(catalog, f"silver.{source.name}"),
            (
                (f"LSN {c.event.lsn} (kafka {c.partition}/{c.offset})", c.event.after)
                for c in changes
                if c.event.op in ("c", "u", "r") and c.event.after is not None
            ),
            skip=UNAVAILABLE,
        )
        applied = apply_changes(changes, source.keys)
        existing = _existing_schema(catalog, f"silver.{source.name}")
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
        current_table = _evolve(
            ensure_table(catalog, f"silver.{source.name}", current_layout), additions, retyped
        )
        history_table = _evolve(
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
        masked, withheld_values = _withhold(
            pa.Table.from_pylist(
                _storable(mask_rows(applied.current, source.pii, masker), undeclared),
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
        history_rows, _ = _withhold(
            pa.Table.from_pylist(
                _storable(mask_rows(applied.history, source.pii, masker), undeclared),
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
                **_evolution_metadata(additions, withheld, withheld_values),
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
        yield _new_columns_result(["silver", source.name], source, evolved, withheld_values)

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
        check_specs=[_new_columns_spec(["silver", source.name])],
    )
    def _asset(context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource):
        freeze_loaded_heap()
        catalog = iceberg.load()
        bronze = ensure_table(catalog, source.bronze_table, source.layout)
        snapshot = bronze.current_snapshot()
        # columns ingestion added to bronze (the source started sending them): typed by
        # the source's own type where it told one, else kept as the text that arrived
        known = set(source.layout.schema.column_names)
        extras = {
            f.name: evolution.text_type(f) for f in bronze.schema().fields if f.name not in known
        }
        columns = {**source.columns, **extras}
        in_bronze = set(bronze.schema().column_names)
        rows = bronze.scan(
            selected_fields=(*(c for c in columns if c in in_bronze), *order_by)
        ).to_arrow()
        for column in columns.keys() - in_bronze:  # declared before any row carried it
            rows = rows.append_column(column, pa.nulls(rows.num_rows, pa.string()))
        result = latest_typed(rows, columns, source.keys, order_by)
        table = ensure_table(catalog, f"silver.{source.name}", layout)
        present = set(table.schema().column_names)
        table = _evolve(
            table,
            {c: iceberg_type(t) for c, t in extras.items() if c not in present},
            {
                **{c: iceberg_type(t) for c, t in columns.items()},
                **{c: StringType() for c in source.pii},
            },
        )
        if extras.keys() - present:
            context.log.info(
                f"schema evolved: added {sorted(extras.keys() - present)} to silver.{source.name}"
            )
        withheld = source.withheld(extras)
        silver_rows, withheld_values = _withhold(result.silver, withheld)
        schema = table.schema().as_arrow()
        if source.pii:  # masked on entry to silver, like every other silver table
            unmasked = _pii_as_text(silver_rows, source.pii)
            masked = mask_frame(unmasked.to_pandas(), source.pii, Masker.from_settings())
            silver_rows = pa.Table.from_pandas(masked, schema=schema, preserve_index=False)
        else:
            silver_rows = conform(silver_rows, schema)
        properties = {
            RUN_ID_KEY: context.run.run_id,
            "lakehouse.bronze-snapshot-id": str(snapshot.snapshot_id if snapshot else ""),
        }

        def write() -> Table:
            table = ensure_table(catalog, f"silver.{source.name}", layout)
            with transaction(table) as tx:
                tx.overwrite(silver_rows, snapshot_properties=properties)
            return table

        table = with_commit_retries(write)
        key = ["silver", source.name]
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table),
                "bronze_rows": result.bronze_rows,
                "superseded_versions": result.superseded,
                "bronze_snapshot_id": properties["lakehouse.bronze-snapshot-id"],
                **_evolution_metadata(
                    {c: iceberg_type(t) for c, t in extras.items() if c not in present},
                    withheld,
                    withheld_values,
                ),
            },
            check_results=[_new_columns_result(key, source, list(extras), withheld_values)],
        )

    return _asset


def typed_silver_assets(sources: Sources) -> list[dg.AssetsDefinition]:
    return [typed_silver_asset(s) for s in (*sources.database, *sources.landing)]
