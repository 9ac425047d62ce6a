"""The whole slice on live services: Kafka and S3 sensors -> bronze -> silver -> dbt gold.

Results are read back with pyiceberg and, for gold, with DuckDB (a second engine),
and compared with values computed independently from the generated input.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest

from lakehouse.dbt.duckdb_plugin import load_iceberg_extension
from lakehouse.demo.clickstream import generate
from lakehouse.demo.load import publish_clickstream, publish_landing_files
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource
from tests.expected import expected_clickstream


def _run_sensor(name, defs, instance):
    sensor = defs.get_repository_def().get_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance,
        resources={
            "iceberg": IcebergCatalogResource(),
            "kafka": KafkaResource(),
            "s3": S3Resource(),
        },
        definitions=defs,
    )
    return sensor(context)


def _launch(defs, instance, job_name, request):
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags
    )
    assert result.success
    return result


def _counts(catalog) -> dict[str, int]:
    return {
        name: catalog.load_table(name).scan().to_arrow().num_rows
        for name in (
            "bronze.clickstream",
            "quarantine.clickstream",
            "silver.page_views",
            "gold.daily_page_views",
            "bronze.marketing_spend",
            "quarantine.marketing_spend",
        )
    }


@pytest.mark.timeout(600)
def test_slice_end_to_end_and_rerun_adds_nothing(lakehouse_env, defs):
    settings = lakehouse_env
    messages = generate(scale=1)
    expected = expected_clickstream(messages)
    assert publish_clickstream(settings) == len(messages)
    assert publish_landing_files(settings) == 3

    with dg.instance_for_test() as instance:
        # sensors propose bounded batches; the runs land them
        kafka_request = _run_sensor("clickstream_kafka_sensor", defs, instance)
        assert isinstance(kafka_request, dg.RunRequest)
        until = kafka_request.run_config["ops"]["bronze_clickstream"]["config"]["until_offsets"]
        assert sum(until.values()) == len(messages)
        _launch(defs, instance, "ingest_clickstream", kafka_request)

        files_request = _run_sensor("marketing_spend_landing_sensor", defs, instance)
        assert isinstance(files_request, dg.RunRequest)
        assert (
            len(files_request.run_config["ops"]["bronze_marketing_spend"]["config"]["files"]) == 3
        )
        _launch(defs, instance, "ingest_marketing_spend", files_request)

        # nothing new: both sensors skip
        assert isinstance(_run_sensor("clickstream_kafka_sensor", defs, instance), dg.SkipReason)
        assert isinstance(
            _run_sensor("marketing_spend_landing_sensor", defs, instance), dg.SkipReason
        )

        result = defs.resolve_job_def("lakehouse").execute_in_process(instance=instance)
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [
            (c.asset_key, c.check_name) for c in checks if not c.passed
        ]
        checked_layers = {c.asset_key.path[0] for c in checks}
        assert {"bronze", "silver", "gold"} <= checked_layers

    catalog = IcebergCatalogResource().load()
    counts = _counts(catalog)
    # bronze + quarantine reconcile with what was produced, exactly once
    assert counts["bronze.clickstream"] == expected["bronze_rows"]
    assert counts["quarantine.clickstream"] == expected["quarantined"]
    assert counts["bronze.clickstream"] + counts["quarantine.clickstream"] == len(messages)
    bronze = catalog.load_table("bronze.clickstream").scan().to_arrow()
    coords = list(
        zip(
            bronze["_kafka_partition"].to_pylist(), bronze["_kafka_offset"].to_pylist(), strict=True
        )
    )
    assert len(set(coords)) == len(coords)
    assert set(bronze.column_names) >= {"_source", "_ingested_at", "_run_id", "_kafka_topic"}
    reasons = catalog.load_table("quarantine.clickstream").scan().to_arrow()
    assert set(reasons["_rule"].to_pylist()) == {"json", "required_fields", "utf8"}
    assert all(reasons["_reason"].to_pylist())

    # silver: deduplicated, typed
    silver = catalog.load_table("silver.page_views").scan().to_arrow()
    assert set(silver["event_id"].to_pylist()) == expected["silver_event_ids"]
    assert silver.num_rows == len(expected["silver_event_ids"])
    assert str(silver.schema.field("event_ts").type) == "timestamp[us, tz=UTC]"
    assert (
        catalog.load_table("quarantine.page_views").scan().to_arrow().num_rows
        == (expected["silver_bad_ts"])
    )

    # gold, read by pyiceberg and by DuckDB's Iceberg reader
    gold = catalog.load_table("gold.daily_page_views").scan().to_arrow().to_pylist()
    got = {str(r["view_date"]): (r["page_views"], r["visitors"], r["sessions"]) for r in gold}
    assert got == expected["daily"]
    conn = duckdb.connect()
    load_iceberg_extension(conn)
    location = catalog.load_table("gold.daily_page_views").metadata_location
    duck = conn.execute(f"select sum(page_views) from iceberg_scan('{location}')").fetchone()[0]
    assert duck == len(expected["silver_event_ids"])

    # partner files: 3 files, 2 broken rows quarantined with file and line
    assert counts["bronze.marketing_spend"] == 36
    spend_q = catalog.load_table("quarantine.marketing_spend").scan().to_arrow().to_pylist()
    assert sorted(r["_row"] for r in spend_q) == [14, 15]
    assert all(r["_file"].endswith("2026-11-03.csv") for r in spend_q)

    # the same data published again and the graph run again: nothing duplicated
    assert publish_clickstream(settings) == 0
    assert publish_landing_files(settings) == 0
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("lakehouse").execute_in_process(instance=instance).success
    assert _counts(catalog) == counts


def test_a_batch_whose_runs_do_not_advance_is_reproposed_a_bounded_number_of_times(
    lakehouse_env, defs
):
    settings = lakehouse_env
    publish_clickstream(settings)
    keys = []
    with dg.instance_for_test() as instance:
        for _ in range(3):
            request = _run_sensor("clickstream_kafka_sensor", defs, instance)
            assert isinstance(request, dg.RunRequest)
            keys.append(request.run_key)
            # a run that ends without committing anything (it reads up to where it starts)
            config = request.run_config["ops"]["bronze_clickstream"]["config"]
            stuck = {p: 0 for p in config["until_offsets"]}
            no_progress = {"ops": {"bronze_clickstream": {"config": {"until_offsets": stuck}}}}
            result = defs.resolve_job_def("ingest_clickstream").execute_in_process(
                run_config=no_progress, instance=instance, tags=request.tags
            )
            assert result.success
        assert [k.rsplit("#", 1)[1] for k in keys] == ["0", "1", "2"]
        given_up = _run_sensor("clickstream_kafka_sensor", defs, instance)
        assert isinstance(given_up, dg.SkipReason)
        assert "ended without moving the committed position" in given_up.skip_message
