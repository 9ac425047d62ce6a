"""silver.page_views and quarantine.page_views, from the clickstream's bronze events."""

import json
from datetime import UTC, datetime

import dagster as dg
import pyarrow as pa
from pyiceberg.expressions import EqualTo
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.declarations.layouts import (
    QUARANTINE,
    SILVER_PAGE_VIEWS,
)
from lakehouse.declarations.pii import PiiPolicy
from lakehouse.declarations.sources import (
    KafkaSource,
    sources,
)
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    evolve,
    existing_schema,
    new_columns_result,
    new_columns_spec,
    pii_as_text,
    withhold,
)
from lakehouse.defs.silver.score import quality_metadata
from lakehouse.ingest.records import json_object
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.quality.contracts import contract_for
from lakehouse.quality.policy import enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.tables.commits import (
    RUN_ID_KEY,
    ensure_table,
    transaction,
    with_commit_retries,
)
from lakehouse.tables.evolution import SchemaBreak
from lakehouse.tables.rebuilds import superseded_by
from lakehouse.transforms.masking import Masker, mask_frame
from lakehouse.transforms.page_views import build_page_views, vanished_fields
from resources.iceberg import IcebergCatalogResource


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
    check_specs=[new_columns_spec(["silver", "page_views"])],
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
        current=existing_schema(catalog, "silver.page_views"),
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
    silver_table = evolve(
        ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS),
        result.additions,
        {c: StringType() for c in result.evolved if c in source.pii},
    )
    if result.additions:
        context.log.info(f"schema evolved: added {sorted(result.additions)} to silver.page_views")
    unmasked, withheld_values = withhold(result.silver, withheld)
    unmasked = pii_as_text(unmasked, source.pii)
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
            **evolution_metadata(result.additions, withheld, withheld_values),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "page_views"],
        metadata={**table_metadata(quarantine), "rows_quarantined": quarantine_rows.num_rows},
    )
    yield new_columns_result(["silver", "page_views"], source, result.evolved, withheld_values)
