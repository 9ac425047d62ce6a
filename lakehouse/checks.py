"""Asset checks for bronze and silver (gold's checks are its dbt tests)."""

from collections import Counter

import dagster as dg
import pandera.pandas as pa_schema
import pyarrow.compute as pc
from pandera.typing import Series

from lakehouse.settings import get_settings
from lakehouse.sources import sources
from lakehouse.tables.commits import committed_position, ensure_table
from lakehouse.tables.schemas import QUARANTINE, SILVER_PAGE_VIEWS
from resources.iceberg import IcebergCatalogResource


@dg.asset_check(
    asset=["bronze", "clickstream"],
    blocking=True,
    description="Every Kafka offset below the committed position is in bronze or quarantine "
    "exactly once: no record lost, none duplicated.",
)
def clickstream_offsets_exactly_once(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
    catalog = iceberg.load()
    source = sources().kafka_source("clickstream")
    topic = source.resolved_topic(get_settings().kafka_topic_prefix)
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    quarantine = ensure_table(catalog, source.quarantine_table, QUARANTINE)
    committed = {int(p): int(o) for p, o in (committed_position(bronze, topic) or {}).items()}
    seen: Counter[tuple[int, int]] = Counter()
    for table in (bronze, quarantine):
        coords = table.scan(selected_fields=("_kafka_partition", "_kafka_offset")).to_arrow()
        seen.update(
            zip(
                coords["_kafka_partition"].to_pylist(),
                coords["_kafka_offset"].to_pylist(),
                strict=True,
            )
        )
    duplicates = sorted(k for k, n in seen.items() if n > 1)
    gaps: dict[str, int] = {}
    for partition, next_offset in committed.items():
        offsets = [o for (p, o) in seen if p == partition]
        first = min(offsets, default=next_offset)
        missing = (next_offset - first) - len(offsets)
        if missing:
            gaps[str(partition)] = missing
    return dg.AssetCheckResult(
        passed=not duplicates and not gaps,
        metadata={
            "records_accounted": sum(seen.values()),
            "duplicate_offsets": len(duplicates),
            "duplicate_examples": dg.MetadataValue.json([list(d) for d in duplicates[:10]]),
            "missing_offsets_by_partition": dg.MetadataValue.json(gaps),
            "committed_offsets": dg.MetadataValue.json({str(k): v for k, v in committed.items()}),
        },
    )


class PageViewContract(pa_schema.DataFrameModel):
    """The silver.page_views contract: what downstream gold models may rely on."""

    event_id: Series[str] = pa_schema.Field(nullable=False, unique=True)
    user_id: Series[str] = pa_schema.Field(nullable=False, str_startswith="u-")
    session_id: Series[str] = pa_schema.Field(nullable=True)
    page: Series[str] = pa_schema.Field(nullable=False, str_startswith="/")
    event_ts: Series[pa_schema.DateTime] = pa_schema.Field(nullable=False)

    class Config:
        strict = False
        coerce = False


@dg.asset_check(
    asset=["silver", "page_views"],
    blocking=True,
    description=(
        "pandera contract: unique non-null event_id, user and page present, typed event_ts."
    ),
)
def page_views_contract(iceberg: IcebergCatalogResource) -> dg.AssetCheckResult:
    table = ensure_table(iceberg.load(), "silver.page_views", SILVER_PAGE_VIEWS)
    arrow = table.scan().to_arrow()
    df = arrow.to_pandas()
    df["event_ts"] = df["event_ts"].dt.tz_convert(None)
    try:
        PageViewContract.validate(df, lazy=True)
        failures = []
    except pa_schema.errors.SchemaErrors as err:
        cases = err.failure_cases
        failures = cases.head(20).astype(str).to_dict(orient="records")
    return dg.AssetCheckResult(
        passed=not failures,
        metadata={
            "rows_checked": arrow.num_rows,
            "distinct_event_ids": pc.count_distinct(arrow["event_id"]).as_py()
            if arrow.num_rows
            else 0,
            "failing_examples": dg.MetadataValue.json(failures),
        },
    )
