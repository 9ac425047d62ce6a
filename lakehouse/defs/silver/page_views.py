"""silver.page_views and quarantine.page_views, from the clickstream's bronze events.

The build (pyiceberg, pyarrow, pandas, pandera) is imported by the step that runs it,
not when the code location loads.
"""

import json
from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.declarations.layouts import (
    QUARANTINE,
)
from lakehouse.declarations.sources import (
    KafkaSource,
    sources,
)
from lakehouse.defs.silver.builds import SilverBuildConfig, log_build, silver_shape
from lakehouse.defs.silver.evolution import (
    evolution_metadata,
    new_columns_result,
    new_columns_spec,
)
from lakehouse.defs.silver.score import quality_metadata
from lakehouse.orchestration.heap import freeze_loaded_heap
from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.orchestration.metadata import table_metadata
from lakehouse.quality.contracts import contract_for
from resources.iceberg import IcebergCatalogResource

if TYPE_CHECKING:
    from pyiceberg.table import Table


def _check_required_fields(catalog, bronze: "Table", source: KafkaSource) -> None:
    """A required field that no event of the newest bronze batch carries any more.

    Bronze quarantines each event without a required field, one by one; when a whole
    batch lacks it, the producer dropped the field: the source stops, naming it.
    """
    from pyiceberg.expressions import EqualTo

    from lakehouse.ingest.records import json_object
    from lakehouse.tables.commits import RUN_ID_KEY, ensure_table, last_write
    from lakehouse.tables.evolution import SchemaBreak
    from lakehouse.transforms.page_views import vanished_fields

    snapshot = last_write(bronze)  # the newest batch, past any compaction
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
def silver_page_views(
    context: dg.AssetExecutionContext, iceberg: IcebergCatalogResource, config: SilverBuildConfig
):
    from lakehouse.silver.page_views import PageViewsBuild
    from lakehouse.tables.commits import ensure_table

    freeze_loaded_heap()
    catalog = iceberg.load()
    source = sources().kafka_source("clickstream")
    contract = contract_for("silver.page_views")
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    # breaking changes stop here, before anything is written, naming the field
    _check_required_fields(catalog, bronze, source)
    build = PageViewsBuild(
        catalog, source, silver_shape(source, contract), context.run.run_id, contract=contract
    )
    built = build.run(full=config.full)
    log_build(context, "silver.page_views", built.plan, built.columns)
    if built.superseded:
        context.log.warning(
            f"silver.page_views was already rebuilt from bronze snapshot {built.superseded}, "
            f"newer than this run's {built.plan.until_id}: nothing written"
        )
    yield dg.MaterializeResult(
        asset_key=["silver", "page_views"],
        metadata={
            **table_metadata(built.silver),
            **quality_metadata(contract, built.enforced, earlier_rejects=built.rejects),
            **built.plan.metadata(),
            "rows_written": built.rows_written,
            "days_rewritten": dg.MetadataValue.json(built.days),
            "bronze_rows_read": built.bronze_rows_read,
            "bronze_page_view_rows": built.bronze_page_view_rows,
            "duplicates_removed": built.duplicates_removed,
            "rows_quarantined": built.rows_quarantined,
            "superseded_by_bronze_snapshot": str(built.superseded or ""),
            **evolution_metadata(built.columns),
        },
    )
    yield dg.MaterializeResult(
        asset_key=["quarantine", "page_views"],
        metadata={**table_metadata(built.quarantine), "rows_quarantined": built.rows_quarantined},
    )
    yield new_columns_result(["silver", "page_views"], source, built.columns)
