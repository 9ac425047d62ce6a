"""A silver rebuild computed from an older bronze snapshot must not overwrite one
already built from a newer snapshot."""

from __future__ import annotations

from lakehouse.sources import sources
from lakehouse.tables.commits import append_with_position, ensure_table
from lakehouse.tables.rebuilds import BUILT_FROM_KEY, superseded_by
from lakehouse.tables.schemas import SILVER_PAGE_VIEWS
from resources.iceberg import IcebergCatalogResource


def test_older_rebuild_sees_it_is_superseded(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    source = sources().kafka_source("clickstream")
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    empty = source.layout.arrow_schema().empty_table()
    older = append_with_position(bronze, empty, "t", {"0": 1}, "r1")
    newer = append_with_position(bronze, empty, "t", {"0": 2}, "r2")
    silver = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    assert superseded_by(silver, bronze, older) is None  # never built: go ahead

    rows = SILVER_PAGE_VIEWS.arrow_schema().empty_table()
    silver.overwrite(rows, snapshot_properties={BUILT_FROM_KEY: str(newer)})
    assert superseded_by(silver, bronze, older) == newer
    assert superseded_by(silver, bronze, newer) is None  # same input: idempotent rewrite

    later = append_with_position(bronze, empty, "t", {"0": 3}, "r3")
    assert superseded_by(silver, bronze, later) is None
