"""Watermark extraction from a real PostgreSQL table: ties, updates, reruns, position."""

from __future__ import annotations

import dagster as dg
import psycopg
import pytest

from lakehouse.declarations.sources import DatabaseSource
from lakehouse.ingest.database import committed_watermark, extract_batch
from resources.iceberg import IcebergCatalogResource
from resources.postgres import PostgresResource

SOURCE = DatabaseSource(
    name="items",
    table="public.items",
    watermark="updated_at",
    keys=("item_id",),
    columns={
        "item_id": "int",
        "label": "string",
        "price": "decimal(8,2)",
        "updated_at": "timestamp",
    },
)


@pytest.fixture
def items_db(make_database):
    dsn = make_database("items")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "create table items (item_id int primary key, label text, price numeric(8,2), "
            "updated_at timestamptz not null)"
        )
        # 250 rows sharing only 3 distinct timestamps: batches must split ties correctly
        conn.execute(
            "insert into items select i, 'item ' || i, i * 1.25, "
            "timestamptz '2026-11-01 00:00:00+00' + (i % 3) * interval '1 hour' "
            "from generate_series(1, 250) i"
        )
    return dsn


def _ids(catalog) -> list[int]:
    rows = catalog.load_table(SOURCE.bronze_table).scan().to_arrow()
    return sorted(int(i) for i in rows["item_id"].to_pylist())


def test_watermark_batches_read_every_row_once_and_then_only_changes(lakehouse_env, items_db):
    catalog = IcebergCatalogResource().load()
    landed = [extract_batch(catalog, items_db, SOURCE, "run", limit=100).landed for _ in range(4)]
    assert landed == [100, 100, 50, 0]
    assert _ids(catalog) == list(range(1, 251))
    position = committed_watermark(catalog, SOURCE)
    assert position == {
        "watermark": "2026-11-01T02:00:00+00:00",
        "key": [248],
    }  # last of the 02:00 tie

    with psycopg.connect(items_db) as conn:
        conn.execute("update items set price = price + 1, updated_at = now() where item_id <= 10")
        conn.execute("insert into items values (251, 'new', 9.99, now())")
    again = extract_batch(catalog, items_db, SOURCE, "run-2")
    assert again.landed == 11
    assert extract_batch(catalog, items_db, SOURCE, "run-3").landed == 0
    ids = _ids(catalog)
    assert len(ids) == 261 and ids.count(5) == 2  # the new version of item 5, once
    latest = [
        r
        for r in catalog.load_table(SOURCE.bronze_table).scan().to_arrow().to_pylist()
        if r["item_id"] == "5"
    ]
    assert sorted(r["price"] for r in latest) == ["6.25", "7.25"]


def test_sensor_proposes_a_run_only_when_rows_are_past_the_position(
    lakehouse_env, make_database, defs
):
    """The shipped `products` source on the shop database the demo seeds."""
    from lakehouse.demo.shop import seed_shop

    dsn = make_database("shop", create=False)  # seed_shop creates it
    seed_shop(dsn)
    sensor = defs.get_repository_def().get_sensor_def("products_database_sensor")
    resources = {"iceberg": IcebergCatalogResource(), "postgres": PostgresResource(dsn=dsn)}
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        request = sensor(context)
        assert isinstance(request, dg.RunRequest)
        job = defs.resolve_job_def("ingest_products")
        result = job.execute_in_process(
            instance=instance, resources={"postgres": PostgresResource(dsn=dsn)}
        )
        assert result.success
        assert isinstance(sensor(context), dg.SkipReason)
    rows = IcebergCatalogResource().load().load_table("bronze.products").scan().to_arrow()
    assert rows.num_rows == 200
    unreachable = {
        "iceberg": IcebergCatalogResource(),
        "postgres": PostgresResource(dsn="postgresql://nobody@127.0.0.1:1/none"),
    }
    with dg.instance_for_test() as instance:
        skip = sensor(dg.build_sensor_context(instance=instance, resources=unreachable))
    assert isinstance(skip, dg.SkipReason) and "cannot reach" in skip.skip_message
