"""Schema evolution: a new optional field flows into silver in the same run without a rewrite;
a dropped column or a narrowed type stops the source with an error naming the field, and
nothing is quarantined or written."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal

import dagster as dg
import pytest
from pyiceberg.types import DecimalType, IntegerType, LongType, StringType

from lakehouse.declarations.sources import DatabaseSource, LandingSource, sources
from lakehouse.defs.silver.cdc import cdc_silver_asset
from lakehouse.defs.silver.evolution import NEW_COLUMNS_CHECK
from lakehouse.defs.silver.typed import typed_silver_asset
from lakehouse.demo.cdc import CUSTOMERS, envelope
from lakehouse.tables.evolution import SchemaBreak, plan
from lakehouse.transforms.masking import Masker
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.spark import SparkResource

DECLARED = {"id": "string", "amount": "decimal(10,2)", "qty": "int"}


def test_new_columns_are_added_with_the_narrowest_type_that_holds_them():
    rows = [
        ("lsn 1", {"id": "a", "amount": Decimal("1.50"), "qty": 1}),
        ("lsn 2", {"id": "b", "amount": None, "qty": 2, "tier": "gold", "score": 7}),
        ("lsn 3", {"id": "c", "amount": Decimal("2"), "qty": 3, "score": 9, "tags": ["x"]}),
    ]
    assert plan("t", DECLARED, None, rows) == {
        "tier": StringType(),
        "score": LongType(),
        "tags": StringType(),
    }


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"id": "a", "qty": 1}, "'amount' is missing"),  # dropped column
        ({"id": "a", "amount": 1.5, "qty": 1}, "'amount' is decimal(10, 2)"),  # now a double
        ({"id": "a", "amount": Decimal("1.234"), "qty": 1}, "'amount'"),  # scale narrowed
        ({"id": "a", "amount": None, "qty": 2**40}, "'qty' is int"),  # beyond int32
        ({"id": 7, "amount": None, "qty": 1}, "'id' is string"),  # type changed
    ],
)
def test_breaking_changes_name_the_field(row, field):
    with pytest.raises(SchemaBreak, match=re.escape(field)):
        plan("silver.t", DECLARED, None, [("LSN 9", row)])


def test_a_column_added_earlier_keeps_its_type():
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    existing = Schema(NestedField(1, "score", IntegerType(), required=False))
    with pytest.raises(SchemaBreak, match="'score'"):
        plan("t", {}, existing, [("p", {"score": "high"})])
    existing = Schema(NestedField(1, "price", DecimalType(5, 1), required=False))
    assert plan("t", {}, existing, [("p", {"price": Decimal("1234.5")})]) == {}


# --- through Kafka, bronze and silver -------------------------------------------

SOURCE = sources().cdc_source("customers")
SELECTION = [
    dg.AssetKey(p)
    for p in (
        ["bronze", "cdc_customers"],
        ["quarantine", "cdc_customers"],
        ["silver", "customers"],
        ["silver", "customers_history"],
        ["quarantine", "customers"],
    )
]


def _row(n: int, **extra) -> dict:
    return {
        "customer_id": f"c-{n:05d}",
        "email": f"person{n}@example.com",
        "full_name": f"Person {n}",
        "country": "DE",
        "credit": Decimal("10.00"),
        "signup_date": date(2025, 1, n),
        "updated_at": datetime(2026, 11, 1, 10, n),
        "notes": None,
        **extra,
    }


def _send(settings, values: list[dict]) -> None:
    topic = SOURCE.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    try:
        for value in values:
            key = value["payload"]["after"]["customer_id"].encode()
            producer.send(topic, key=key, value=json.dumps(value).encode())
        producer.flush()
    finally:
        producer.close()


def _with_fields(value: dict, fields: list[dict]) -> dict:
    for part in value["schema"]["fields"]:
        if part["field"] in ("before", "after"):
            part["fields"] = fields
    return value


def _run(defs, instance):
    return defs.resolve_job_def("lakehouse").execute_in_process(
        instance=instance, asset_selection=SELECTION, raise_on_error=False
    )


@pytest.mark.timeout(900)
def test_a_new_field_flows_into_silver_and_a_breaking_change_stops_the_source(lakehouse_env, defs):
    _send(
        lakehouse_env, [envelope("r", None, _row(n), 100 + n, 1000 + n, 1, True) for n in (1, 2, 3)]
    )
    catalog = IcebergCatalogResource().load()
    with dg.instance_for_test() as instance:
        assert _run(defs, instance).success
        table = catalog.load_table("silver.customers")
        uuid, schema_id = table.metadata.table_uuid, table.schema().schema_id

        # the source adds an optional column: it appears in silver in this run
        tier = {"field": "loyalty_tier", "type": "string", "optional": True}
        update = envelope("u", _row(2), _row(2, loyalty_tier="gold"), 200, 2000, 2, True)
        _send(lakehouse_env, [_with_fields(update, [*CUSTOMERS.fields, tier])])
        result = _run(defs, instance)
        assert result.success
        mat = next(
            e.event_specific_data.materialization
            for e in result.get_asset_materialization_events()
            if e.event_specific_data.materialization.asset_key
            == dg.AssetKey(["silver", "customers"])
        )
        assert mat.metadata["columns_added"].value == {"loyalty_tier": "string"}
        table = catalog.load_table("silver.customers")
        assert table.metadata.table_uuid == uuid and table.schema().schema_id > schema_id
        # customers carries PII: the unclassified column is there, its values withheld
        rows = {r["customer_id"]: r for r in table.scan().to_arrow().to_pylist()}
        assert {r["loyalty_tier"] for r in rows.values()} == {None}
        check = _check(result, ["silver", "customers"])
        assert not check.passed and check.metadata["withheld_values"].value == 1
        assert check.metadata["unclassified_columns"].value == ["loyalty_tier"]
        history = catalog.load_table("silver.customers_history").scan().to_arrow()
        assert set(history["loyalty_tier"].to_pylist()) == {None}

        # classified as plain in sources.yml: the next build from bronze fills it
        plain = cdc_silver_asset(SOURCE.model_copy(update={"plain": ("loyalty_tier",)}))
        rebuilt = dg.materialize(
            [plain],
            resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
            instance=instance,
        )
        assert _check(rebuilt, ["silver", "customers"]).passed
        table = catalog.load_table("silver.customers")
        rows = {r["customer_id"]: r for r in table.scan().to_arrow().to_pylist()}
        assert rows["c-00002"]["loyalty_tier"] == "gold"
        assert rows["c-00001"]["loyalty_tier"] is None
        snapshot = table.current_snapshot().snapshot_id

        # the source changes a type (decimal credit now a double) and sends a value the
        # declared decimal(10,2) cannot hold: the source stops (a double that fits, as
        # decimal.handling.mode=double sends them, would be stored: test_debezium_types)
        double = [
            {**f, "type": "double", "name": None, "parameters": None}
            if f["field"] == "credit"
            else f
            for f in [*CUSTOMERS.fields, tier]
        ]
        narrowed = envelope("u", _row(3), _row(3, credit=12.345), 300, 3000, 3, True)
        _send(lakehouse_env, [_with_fields(narrowed, double)])
        failed = _run(defs, instance)
        assert not failed.success
        errors = [
            e.event_specific_data.error.to_string()
            for e in failed.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
        assert any("'credit'" in m and "LSN 300" in m for m in errors), errors
        assert catalog.load_table("silver.customers").current_snapshot().snapshot_id == snapshot
        assert catalog.load_table("quarantine.customers").scan().to_arrow().num_rows == 0
        bronze = catalog.load_table("bronze.cdc_customers").scan().to_arrow()
        assert 300 in bronze["lsn"].to_pylist()  # the raw change is kept in bronze


def _check(result, asset: list[str]):
    """The new-columns check evaluation of ``asset`` in a run."""
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(asset) and e.check_name == NEW_COLUMNS_CHECK
    )


def _step_errors(result) -> list[str]:
    return [
        e.event_specific_data.error.to_string()
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]


def _data_files(table) -> set[str]:
    return set(table.inspect.files()["file_path"].to_pylist())


def test_adding_a_column_commits_metadata_only_and_retype_replaces_a_silver_column(
    lakehouse_env,
):
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.types import NestedField

    from lakehouse.tables.evolution import apply, retype

    catalog = IcebergCatalogResource().load()
    catalog.create_namespace_if_not_exists("silver")
    table = catalog.create_table(
        "silver.evolving", Schema(NestedField(1, "id", StringType(), required=False))
    )
    table.append(pa.table({"id": pa.array(["a", "b"], pa.string())}))
    snapshots, files = len(table.snapshots()), _data_files(table)
    table = apply(table, {"score": LongType()})
    assert len(table.snapshots()) == snapshots and _data_files(table) == files
    assert table.scan().to_arrow().column("score").to_pylist() == [None, None]
    table = retype(table, {"score": StringType()})  # not a promotion: replaced, metadata only
    assert table.schema().find_field("score").field_type == StringType()
    assert len(table.snapshots()) == snapshots
    table = apply(table, {"n": IntegerType()})
    table = retype(table, {"n": LongType()})  # a promotion: in place
    assert table.schema().find_field("n").field_type == LongType()


# --- Kafka events: bronze.clickstream -> silver.page_views ----------------------

CLICKSTREAM = sources().kafka_source("clickstream")


def _event(n: int, **extra) -> dict:
    return {
        "event_id": f"ev-{n}",
        "event_type": "page_view",
        "user_id": f"u-{n:05d}",
        "session_id": f"s-u-{n:05d}-1",
        "page": "/",
        "ts": f"2026-11-01T10:{n:02d}:00Z",
        **extra,
    }


def _publish(settings, events: list) -> str:
    topic = CLICKSTREAM.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    try:
        for event in events:
            producer.send(topic, value=json.dumps(event).encode())
        producer.flush()
    finally:
        producer.close()
    return topic


def _ingest_events(settings, events: list, run_id: str):
    from lakehouse.ingest.kafka.reader import ingest_kafka_batch

    topic = _publish(settings, events)
    catalog = IcebergCatalogResource().load()
    return ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, run_id)


def _page_views(instance):
    from lakehouse.defs.silver.page_views import silver_page_views

    return dg.materialize(
        [silver_page_views],
        resources={"iceberg": IcebergCatalogResource()},
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.timeout(600)
def test_a_new_event_field_is_withheld_until_classified_then_flows(lakehouse_env, monkeypatch):
    catalog = IcebergCatalogResource().load()
    with dg.instance_for_test() as instance:
        _ingest_events(lakehouse_env, [_event(n) for n in range(1, 4)], "run-1")
        assert _page_views(instance).success
        table = catalog.load_table("silver.page_views")
        uuid, schema_id = table.metadata.table_uuid, table.schema().schema_id
        bronze_files = _data_files(catalog.load_table("bronze.clickstream"))

        # producers add two optional fields; clickstream carries PII, so they are
        # unclassified: columns added, values withheld, the check names them
        new = [_event(n, referrer=f"https://ref.example/{n}", score=n * 10) for n in (4, 5)]
        _ingest_events(lakehouse_env, new, "run-2")
        result = _page_views(instance)
        assert result.success
        table = catalog.load_table("silver.page_views")
        assert table.metadata.table_uuid == uuid and table.schema().schema_id > schema_id
        assert table.schema().find_field("score").field_type == LongType()
        rows = {r["event_id"]: r for r in table.scan().to_arrow().to_pylist()}
        assert len(rows) == 5
        assert all(r["referrer"] is None and r["score"] is None for r in rows.values())
        check = _check(result, ["silver", "page_views"])
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["unclassified_columns"].value == ["referrer", "score"]
        assert check.metadata["withheld_values"].value == 4
        bronze = catalog.load_table("bronze.clickstream")
        assert bronze_files <= _data_files(bronze)  # bronze is never rewritten
        payloads = bronze.scan().to_arrow()["payload"].to_pylist()
        assert sum("https://ref.example/4" in p for p in payloads) == 1  # the raw is kept

        # the user classifies them: referrer is plain, score is PII (hashed: now text)
        classified = CLICKSTREAM.model_copy(
            update={"plain": ("referrer",), "pii": {**CLICKSTREAM.pii, "score": "hash"}}
        )
        patched = sources().model_copy(update={"kafka": (classified,)})
        monkeypatch.setattr("lakehouse.defs.silver.page_views.sources", lambda: patched)
        result = _page_views(instance)
        assert result.success and _check(result, ["silver", "page_views"]).passed
        table = catalog.load_table("silver.page_views")
        assert table.metadata.table_uuid == uuid
        rows = {r["event_id"]: r for r in table.scan().to_arrow().to_pylist()}
        assert rows["ev-4"]["referrer"] == "https://ref.example/4"
        assert rows["ev-1"]["referrer"] is None  # older events never had it
        masker = Masker.from_settings()
        assert rows["ev-5"]["score"] == masker.hash("50") and rows["ev-1"]["score"] is None


@pytest.mark.timeout(600)
def test_a_required_event_field_gone_or_retyped_stops_page_views_naming_it(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    with dg.instance_for_test() as instance:
        _ingest_events(lakehouse_env, [_event(n) for n in range(1, 4)], "run-1")
        assert _page_views(instance).success
        snapshot = catalog.load_table("silver.page_views").current_snapshot().snapshot_id

        # a whole batch without "ts": bronze quarantines each event, silver stops
        gone = [{k: v for k, v in _event(n).items() if k != "ts"} for n in (4, 5)]
        batch = _ingest_events(lakehouse_env, gone, "run-2")
        assert (batch.landed, batch.quarantined) == (0, 2)
        failed = _page_views(instance)
        assert not failed.success
        assert any("required field 'ts'" in m and "run-2" in m for m in _step_errors(failed))
        assert catalog.load_table("silver.page_views").current_snapshot().snapshot_id == snapshot

        # the producer is fixed, but now sends user_id as an object: stops, naming it
        retyped = _event(6, user_id={"id": "u-00006"})
        _ingest_events(lakehouse_env, [_event(7), retyped], "run-3")
        failed = _page_views(instance)
        assert not failed.success
        errors = _step_errors(failed)
        assert any("'user_id'" in m and "JSON object" in m for m in errors), errors
        assert catalog.load_table("silver.page_views").current_snapshot().snapshot_id == snapshot
        quarantined = catalog.load_table("quarantine.page_views").scan().to_arrow()
        assert quarantined.num_rows == 0  # nothing set aside silently


# --- database extraction: PostgreSQL -> bronze.items -> silver.items -------------

ITEMS = DatabaseSource(
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


def _typed_silver(source, instance):
    return dg.materialize(
        [typed_silver_asset(source)],
        resources={"iceberg": IcebergCatalogResource()},
        instance=instance,
        raise_on_error=False,
    )


@pytest.mark.timeout(600)
def test_a_new_database_column_flows_typed_and_a_dropped_or_narrowed_one_stops(
    lakehouse_env, make_database
):
    import psycopg

    from lakehouse.defs.bronze.sensors import database_sensor
    from lakehouse.ingest.database import extract_batch
    from resources.postgres import PostgresResource

    dsn = make_database("evolve")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "create table items (item_id int primary key, label text, price numeric(8,2), "
            "updated_at timestamptz not null)"
        )
        conn.execute(
            "insert into items select i, 'item ' || i, i * 1.25, "
            "timestamptz '2026-11-01 00:00:00+00' + i * interval '1 minute' "
            "from generate_series(1, 3) i"
        )
    catalog = IcebergCatalogResource().load()
    with dg.instance_for_test() as instance:
        assert extract_batch(catalog, dsn, ITEMS, "run-1").landed == 3
        assert _typed_silver(ITEMS, instance).success
        bronze = catalog.load_table("bronze.items")
        files = _data_files(bronze)
        uuid = catalog.load_table("silver.items").metadata.table_uuid

        with psycopg.connect(dsn) as conn:
            conn.execute("alter table items add column weight numeric(6,3), add column color text")
            conn.execute(
                "update items set weight = 1.5, color = 'red', "
                "updated_at = timestamptz '2026-11-02 00:00:00+00' where item_id = 2"
            )
        assert extract_batch(catalog, dsn, ITEMS, "run-2").landed == 1
        bronze = catalog.load_table("bronze.items")
        assert files <= _data_files(bronze)  # the old files stay: metadata-only evolution
        assert bronze.schema().find_field("weight").doc == "lakehouse.type=decimal(6,3)"
        result = _typed_silver(ITEMS, instance)
        assert result.success and _check(result, ["silver", "items"]).passed  # no PII: allowed
        table = catalog.load_table("silver.items")
        assert table.metadata.table_uuid == uuid
        assert table.schema().find_field("weight").field_type == DecimalType(6, 3)
        rows = {r["item_id"]: r for r in table.scan().to_arrow().to_pylist()}
        assert rows[2]["weight"] == Decimal("1.500") and rows[2]["color"] == "red"
        assert rows[1]["weight"] is None and rows[1]["color"] is None

        snapshot = catalog.load_table("bronze.items").current_snapshot().snapshot_id
        with psycopg.connect(dsn) as conn:
            conn.execute("alter table items alter column price type numeric(12,4)")
            conn.execute("update items set updated_at = now() where item_id = 3")
        with pytest.raises(SchemaBreak, match=r"'price' .* numeric\(12,4\).*decimal\(8,2\)"):
            extract_batch(catalog, dsn, ITEMS, "run-3")
        with psycopg.connect(dsn) as conn:
            conn.execute("alter table items alter column price type numeric(8,2)")
            conn.execute("alter table items drop column label")
        with pytest.raises(SchemaBreak, match="declared column 'label' is missing"):
            extract_batch(catalog, dsn, ITEMS, "run-4")
        # the sensor's tick fails with the same message, not PostgreSQL's
        resources = {"iceberg": IcebergCatalogResource(), "postgres": PostgresResource(dsn=dsn)}
        sensor = database_sensor(ITEMS)
        with pytest.raises(SchemaBreak, match="declared column 'label' is missing"):
            sensor(dg.build_sensor_context(instance=instance, resources=resources))
        bronze = catalog.load_table("bronze.items")
        assert bronze.current_snapshot().snapshot_id == snapshot  # nothing written
        assert not catalog.table_exists("quarantine.items")  # nothing set aside either


# --- landing files: s3://landing/<source>/ -> bronze -> silver -----------------

SPEND = LandingSource(
    name="spend",
    format="csv",
    columns={"day": "date", "channel": "string", "spend": "decimal(8,2)"},
    keys=("day", "channel"),
)


@pytest.mark.timeout(600)
def test_a_new_landing_column_flows_and_a_dropped_one_stops_the_source(lakehouse_env):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from lakehouse.ingest.landing.reader import ingest_files
    from resources.s3 import S3Resource

    catalog = IcebergCatalogResource().load()
    s3, bucket = S3Resource().client(), lakehouse_env.landing_bucket
    s3.put_object(Bucket=bucket, Key="spend/1.csv", Body="day,channel,spend\n2026-11-01,ads,1.50\n")
    ingest = lambda key, source=SPEND: ingest_files(  # noqa: E731
        catalog, s3, bucket, source, [key], "run-" + key
    )
    with dg.instance_for_test() as instance:
        assert ingest("spend/1.csv").landed == 1
        assert _typed_silver(SPEND, instance).success
        files = _data_files(catalog.load_table("bronze.spend"))

        # a partner adds a column (and reorders the header): it lands as text
        body = "region,day,channel,spend\nEU,2026-11-02,ads,2.00\nUS,2026-11-02,mail,3.00\n"
        s3.put_object(Bucket=bucket, Key="spend/2.csv", Body=body)
        assert ingest("spend/2.csv").landed == 2
        buffer = io.BytesIO()
        pq.write_table(
            pa.table({"day": ["2026-11-03"], "channel": ["tv"], "spend": ["4.00"], "clicks": [7]}),
            buffer,
        )
        parquet = SPEND.model_copy(update={"format": "parquet"})
        s3.put_object(Bucket=bucket, Key="spend/3.parquet", Body=buffer.getvalue())
        assert ingest("spend/3.parquet", parquet).landed == 1
        bronze = catalog.load_table("bronze.spend")
        assert files <= _data_files(bronze)
        assert {"region", "clicks"} <= set(bronze.schema().column_names)
        result = _typed_silver(SPEND, instance)
        assert result.success and _check(result, ["silver", "spend"]).passed
        rows = {
            (str(r["day"]), r["channel"]): r
            for r in catalog.load_table("silver.spend").scan().to_arrow().to_pylist()
        }
        assert rows[("2026-11-02", "ads")]["region"] == "EU"
        assert rows[("2026-11-03", "tv")]["clicks"] == "7"  # text until declared
        assert rows[("2026-11-01", "ads")]["region"] is None

        # declared with a type in sources.yml: silver retypes the column
        typed = SPEND.model_copy(update={"columns": {**SPEND.columns, "clicks": "long"}})
        assert _typed_silver(typed, instance).success
        table = catalog.load_table("silver.spend")
        assert table.schema().find_field("clicks").field_type == LongType()
        assert 7 in table.scan().to_arrow()["clicks"].to_pylist()

        # a file without a declared column: the source stops, naming it, nothing lands
        snapshot = catalog.load_table("bronze.spend").current_snapshot().snapshot_id
        s3.put_object(Bucket=bucket, Key="spend/4.csv", Body="day,channel\n2026-11-04,ads\n")
        with pytest.raises(SchemaBreak, match=r"\['spend'\] missing from s3://.*/spend/4.csv"):
            ingest("spend/4.csv")
        assert catalog.load_table("bronze.spend").current_snapshot().snapshot_id == snapshot
        assert catalog.load_table("quarantine.spend").scan().to_arrow().num_rows == 0
