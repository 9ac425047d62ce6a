"""Gold on the local target: every dbt model built from generated silver Iceberg
tables, read back with pyiceberg and compared with the business rule in pandas;
the daily model built incrementally and backfilled; dbt tests as asset checks."""

from __future__ import annotations

import os
from datetime import date, timedelta
from decimal import Decimal

import dagster as dg
import pyarrow as pa
import pytest

from lakehouse.dbt.duckdb_plugin import WINDOW_KEY
from lakehouse.dbt.sql_check import silver_layouts
from lakehouse.tables.commits import ensure_table
from resources.iceberg import IcebergCatalogResource
from tests import gold_expected as expected


def write_silver(catalog, rows: dict[str, list[dict]]) -> None:
    """Overwrite the silver tables gold reads, in the layouts the silver assets write."""
    layouts = silver_layouts()
    for name, table_rows in rows.items():
        layout = layouts[name]
        table = ensure_table(catalog, f"silver.{name}", layout)
        table.overwrite(pa.Table.from_pylist(table_rows, schema=layout.arrow_schema()))


def gold(catalog, name: str, key) -> dict:
    rows = catalog.load_table(f"gold.{name}").scan().to_arrow().to_pylist()
    assert rows, f"gold.{name} is empty"
    keyed = {key(r): r for r in rows}
    assert len(keyed) == len(rows), f"gold.{name} has duplicate keys"
    return keyed


def build(defs, instance, job: str, **kwargs) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, raise_on_error=False, **kwargs
    )


def partition_range(start: str, end: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": start,
        "dagster/asset_partition_range_end": end,
    }


def approx(value, digits: int = 2):
    return None if value is None else round(float(value), digits)


@pytest.mark.timeout(600)
def test_every_gold_model_matches_its_business_rule(lakehouse_env, defs):
    catalog = IcebergCatalogResource().load()
    rows = expected.silver_rows(days=3)
    write_silver(catalog, rows)
    with dg.instance_for_test() as instance:
        result = build(defs, instance, "build_gold")
        assert result.success
        daily = build(
            defs, instance, "build_gold_daily", tags=partition_range("2026-11-01", "2026-11-03")
        )
        assert daily.success
        materialized = [
            *result.get_asset_materialization_events(),
            *daily.get_asset_materialization_events(),
        ]
        assert len({e.asset_key for e in materialized}) == 7  # daily: one per partition
        lineages, inputs_of = {}, {}
        for event in materialized:  # what the UI shows: the Iceberg table as built
            metadata = event.materialization.metadata
            table = catalog.load_table(".".join(event.asset_key.path))
            assert metadata["dagster/row_count"].value == len(table.scan().to_arrow())
            assert metadata["snapshot_id"].value == str(table.current_snapshot().snapshot_id)
            columns = metadata["dagster/column_schema"].schema.columns
            assert all(c.description for c in columns), event.asset_key
            lineage = metadata["dagster/column_lineage"].column_lineage.deps_by_column
            assert set(lineage) == {c.name for c in columns}, event.asset_key
            inputs_of[event.asset_key.path[-1]] = metadata["column_inputs"].value
            lineages[event.asset_key.path[-1]] = {
                column: {(".".join(d.asset_key.path), d.column_name) for d in deps}
                for column, deps in lineage.items()
            }
        checks = [*result.get_asset_check_evaluations(), *daily.get_asset_check_evaluations()]
        assert checks and all(c.passed for c in checks), [
            c.check_name for c in checks if not c.passed
        ]

    # column lineage reaches through the ephemeral staging CTEs to silver columns,
    # and from one mart to another; count(*) depends on no column
    revenue = {("silver.order_items", "quantity"), ("silver.order_items", "unit_price")}
    assert revenue <= lineages["daily_revenue"]["revenue"]
    assert lineages["daily_revenue"]["order_date"] == {("silver.orders", "order_ts")}
    assert lineages["customer_segments"]["revenue"] == {
        ("gold.customer_lifetime_value", "lifetime_revenue")
    }
    assert lineages["marketing_roi"]["roas"] == {("silver.marketing_spend", "spend")} | revenue
    assert lineages["daily_page_views"]["page_views"] == set()
    inputs = inputs_of["marketing_roi"]  # the same, as the open-source UI shows it
    assert (
        "| roas | silver/marketing_spend.spend, silver/order_items.quantity, "
        "silver/order_items.unit_price |" in inputs
    )
    assert "| campaigns | (no input column) |" in inputs

    want = expected.daily_revenue(rows)
    assert set(want) == {date(2026, 11, d) for d in (1, 2, 3)}
    got = gold(catalog, "daily_revenue", lambda r: r["order_date"])
    assert set(got) == set(want)
    for day, values in want.items():
        row = got[day]
        assert row["revenue"] == values["revenue"], day
        for column in ("orders", "cancelled_orders", "customers", "units_sold"):
            assert row[column] == values[column], (day, column)
        assert approx(row["avg_order_value"]) == approx(values["avg_order_value"])

    want = expected.customer_lifetime_value(rows)
    got = gold(catalog, "customer_lifetime_value", lambda r: r["customer_id"])
    assert set(got) == set(want)
    for customer, values in want.items():
        for column, value in values.items():
            assert got[customer][column] == value, (customer, column)

    want = expected.customer_segments(rows)
    got = gold(catalog, "customer_segments", lambda r: (r["country"], r["value_tier"]))
    assert {
        k: {"customers": v["customers"], "revenue": v["revenue"]} for k, v in got.items()
    } == want

    want = expected.conversion_funnel(rows)
    got = gold(catalog, "conversion_funnel", lambda r: r["funnel_date"])
    assert set(got) == set(want)
    for day, values in want.items():
        for column, value in values.items():
            assert got[day][column] == value, (day, column)
        assert (
            got[day]["checkout_sessions"]
            <= got[day]["cart_sessions"]
            <= got[day]["product_sessions"]
        )

    want = expected.product_performance(rows)
    got = gold(catalog, "product_performance", lambda r: r["product_id"])
    assert set(got) == set(want) and len(got) == 200
    for product, values in want.items():
        for column, value in values.items():
            assert got[product][column] == value, (product, column)

    want = expected.marketing_roi(rows)
    got = gold(catalog, "marketing_roi", lambda r: (r["spend_date"], r["channel"]))
    assert set(got) == set(want)
    for key, values in want.items():
        for column in ("spend", "orders", "revenue"):
            assert got[key][column] == values[column], (key, column)
        assert approx(got[key]["roas"], 4) == values["roas"]


EPOCH = date(1970, 1, 1)


def _partition_files(table) -> dict[date, set[str]]:
    files: dict[date, set[str]] = {}
    for task in table.scan().plan_files():
        day = EPOCH + timedelta(days=task.file.partition[0])
        files.setdefault(day, set()).add(task.file.file_path)
    return files


@pytest.mark.timeout(600)
def test_daily_revenue_backfills_in_one_run_and_adds_a_day_without_rewriting(lakehouse_env, defs):
    catalog = IcebergCatalogResource().load()
    rows = expected.silver_rows(days=8)
    first_week = {
        **rows,
        "orders": [o for o in rows["orders"] if o["order_ts"].date() < date(2026, 11, 8)],
    }
    write_silver(catalog, first_week)
    with dg.instance_for_test() as instance:
        backfill = build(
            defs, instance, "build_gold_daily", tags=partition_range("2026-11-01", "2026-11-07")
        )
        assert backfill.success
        table = catalog.load_table("gold.daily_revenue")
        # seven days, one run, one dbt invocation, one commit covering the whole window
        commits = [s for s in table.snapshots() if WINDOW_KEY in (s.summary.additional_properties)]
        assert [s.summary[WINDOW_KEY] for s in commits] == ["order_date:[2026-11-01,2026-11-08)"]
        before = _partition_files(table)
        assert set(before) == {date(2026, 11, d) for d in range(1, 8)}

        write_silver(catalog, rows)  # day 8 arrives
        assert build(defs, instance, "build_gold_daily", partition_key="2026-11-08").success
        added = catalog.load_table("gold.daily_revenue").current_snapshot()
        # and is rebuilt (a late correction): only its own partition is replaced
        assert build(defs, instance, "build_gold_daily", partition_key="2026-11-08").success

    table = catalog.load_table("gold.daily_revenue")
    assert added.summary[WINDOW_KEY] == "order_date:[2026-11-08,2026-11-09)"
    assert added.summary["changed-partition-count"] == "1"
    assert "deleted-data-files" not in added.summary.additional_properties
    # the rebuild's commits (pyiceberg: a delete, then an append) each touch one partition
    rebuild = [
        s.summary.additional_properties
        for s in table.snapshots()
        if s.sequence_number > added.sequence_number
    ]
    assert rebuild and all(r["changed-partition-count"] == "1" for r in rebuild), rebuild
    assert sum(int(r.get("deleted-data-files", 0)) for r in rebuild) == 1
    assert sum(int(r.get("added-data-files", 0)) for r in rebuild) == 1
    after = _partition_files(table)
    assert {d: after[d] for d in before} == before  # older partitions: the same files
    assert set(after) - set(before) == {date(2026, 11, 8)}
    want = expected.daily_revenue(rows)[date(2026, 11, 8)]
    got = gold(catalog, "daily_revenue", lambda r: r["order_date"])[date(2026, 11, 8)]
    assert got["revenue"] == want["revenue"] and got["orders"] == want["orders"]


@pytest.mark.timeout(600)
def test_failing_dbt_tests_show_as_checks_and_a_blocking_one_stops_downstream(lakehouse_env, defs):
    catalog = IcebergCatalogResource().load()
    rows = expected.silver_rows(days=1)
    # a refund booked as a negative price: one customer's lifetime revenue turns negative
    victim = rows["orders"][0]
    rows["order_items"].append(
        {
            "order_item_id": "oi-bad",
            "order_id": victim["order_id"],
            "product_id": "p-0001",
            "quantity": 1,
            "unit_price": Decimal("-99999.00"),
            "updated_at": victim["updated_at"],
        }
    )
    victim["status"] = "paid"
    write_silver(catalog, rows)
    with dg.instance_for_test() as instance:
        result = build(defs, instance, "build_gold")
        assert not result.success
        failed = {
            (c.asset_key.to_user_string(), c.check_name)
            for c in result.get_asset_check_evaluations()
            if not c.passed
        }
        assert (
            "gold/customer_lifetime_value",
            "non_negative_customer_lifetime_value_lifetime_revenue",
        ) in failed
        materialized = {
            e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
        }
        assert "gold/customer_lifetime_value" in materialized
        assert "gold/customer_segments" not in materialized  # blocked downstream
        assert "gold/product_performance" in materialized  # unrelated models still build
    assert not catalog.table_exists("gold.customer_segments")


def test_the_dbt_version_is_known_without_running_dbt_version():
    """dagster-dbt runs `dbt --version` before a run's first dbt command unless told the
    version (``LakehouseDbtCli``): 2.5 s, PyPI lookups and dbt-trino's INFO log line."""
    import importlib.metadata

    from dagster_dbt import DbtCliResource
    from packaging import version

    from lakehouse.dbt.project import dbt_cli

    assert "_cli_version" in vars(DbtCliResource), (
        "dagster-dbt no longer has DbtCliResource._cli_version: LakehouseDbtCli's override "
        "does nothing; find how dagster-dbt now learns the dbt version"
    )
    assert dbt_cli()._cli_version == version.parse(importlib.metadata.version("dbt-core"))


def test_a_dbt_step_loads_no_dbt_adapter_in_its_own_process():
    """dagster-dbt loads dbt's adapter, profile and project in the step's process before
    each dbt command (1.5-3 s of CPU here), only for metadata fetchers we do not use."""
    import inspect

    from dagster_dbt import DbtCliResource

    from lakehouse.dbt.project import dbt_cli

    assert "self._initialize_dbt_core_adapter(" in inspect.getsource(DbtCliResource.cli), (
        "dagster-dbt no longer opens its adapter through _initialize_dbt_core_adapter: "
        "LakehouseDbtCli's override does nothing; find where it now does"
    )
    assert dbt_cli()._initialize_dbt_core_adapter(["build"]) is None


def test_a_partition_window_reparses_one_model_not_the_project(dbt_manifest, tmp_path):
    """The window reaches dbt in the environment: dbt re-parses only the model that reads
    it (a changed ``--vars`` re-parses every file), and the model's config carries it."""
    from lakehouse.dbt.project import WINDOW_END_VAR, WINDOW_START_VAR, dbt_cli

    invocation = dbt_cli().cli(
        ["parse"],
        env={WINDOW_START_VAR: "2026-11-01", WINDOW_END_VAR: "2026-11-03"},
        target_path=tmp_path / "target",
    )
    messages = [str(e.raw_event["info"]["msg"]) for e in invocation.stream_raw_events()]
    assert invocation.is_successful(), messages
    assert not any("Unable to do partial parsing" in m for m in messages), messages
    node = invocation.get_artifact("manifest.json")["nodes"]["model.lakehouse.daily_revenue"]
    assert node["config"]["iceberg_window"] == {
        "column": "order_date",
        "start": "2026-11-01",
        "end": "2026-11-03",
    }
    assert WINDOW_START_VAR not in os.environ  # set for that process alone


def test_dbt_target_directories_of_old_invocations_are_pruned(tmp_path):
    """dagster-dbt leaves a target directory per dbt invocation; those over a day old go."""
    import time

    from lakehouse.dbt.project import prune_invocation_targets

    old = tmp_path / "gold_dbt_models-1aeddf1-56d135a"
    recent = tmp_path / "gold_daily_dbt_models-3e76310-9c0b705"
    kept = [tmp_path / "iceberg_staging", tmp_path / "compiled", tmp_path / "manifest.json"]
    for directory in (old, recent, *kept[:2]):
        (directory / "compiled").mkdir(parents=True)
    kept[2].write_text("{}")
    day_ago = time.time() - 2 * 86_400
    for path in (old, *kept):
        os.utime(path, (day_ago, day_ago))

    assert prune_invocation_targets(tmp_path) == [old]
    assert not old.exists() and recent.exists() and all(p.exists() for p in kept)
    assert prune_invocation_targets(tmp_path / "missing") == []


def test_parsing_the_project_prints_no_third_party_log_lines(dbt_manifest):
    """`lakehouse prepare` and every gold run invoke dbt: nothing of its plugins' logging
    (``INFO:trino.auth:keyring module not found``) reaches the terminal."""
    import subprocess
    import sys

    from lakehouse.settings import PROJECT_ROOT

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from lakehouse.dbt.project import prepare_manifest as p; p(force=True)",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "trino" not in result.stderr and "INFO:" not in result.stderr, result.stderr


def test_the_manifest_is_parsed_again_only_when_the_project_or_environment_changes(
    dbt_manifest, tmp_path, monkeypatch
):
    """`lakehouse demo` and `lakehouse dev` prepare the manifest on every start: dbt runs
    only when a project file, dbt's version, a variable the project reads or a DBT_
    variable changed."""
    import shutil

    from lakehouse.dbt.project import DBT_PROJECT_DIR, prepare_manifest, project_fingerprint

    assert prepare_manifest(force=True) is True
    assert prepare_manifest() is False  # nothing changed: no dbt process

    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    first = project_fingerprint(copy)
    (copy / "target").mkdir()
    (copy / "target" / "run_results.json").write_text("{}")  # dbt's outputs are no input
    assert project_fingerprint(copy) == first
    model = sorted((copy / "models").rglob("*.sql"))[0]
    model.write_text(model.read_text() + "\n-- edited\n")
    edited = project_fingerprint(copy)
    assert edited != first
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "elsewhere"))
    assert project_fingerprint(copy) == edited  # the project does not read it
    monkeypatch.setenv("LAKEHOUSE_DBT_TARGET", "trino")  # profiles.yml reads it
    targeted = project_fingerprint(copy)
    assert targeted != edited
    monkeypatch.setenv("DBT_PARTIAL_PARSE", "false")  # dbt's own settings count
    assert project_fingerprint(copy) != targeted


@pytest.mark.timeout(300)
def test_two_dbt_runs_at_once_each_build_their_own_gold(
    lakehouse_env, dbt_manifest, tmp_path, monkeypatch
):
    """Two dbt invocations on one machine (a backfill beside ``build_gold``, two test
    workers, two runs of ``lakehouse dev``) stage their Parquet apart: each gold table
    is built from its own catalog's silver, and no staging is left behind."""
    import os
    import subprocess

    from lakehouse.dbt.project import DBT_PROJECT_DIR, dbt_executable
    from lakehouse.settings import get_settings
    from lakehouse.stack.provision import provision

    # built, then checked by dbt tests that read what the run staged
    models = "daily_page_views+ product_performance conversion_funnel"
    runs = []
    for days in (3, 1):
        env = {**os.environ, "LAKEHOUSE_STATE_DIR": str(tmp_path / f"state-{days}")}
        monkeypatch.setenv("LAKEHOUSE_STATE_DIR", env["LAKEHOUSE_STATE_DIR"])
        provision(get_settings())
        catalog = IcebergCatalogResource().load()
        write_silver(catalog, expected.silver_rows(days=days))
        runs.append((catalog, days, env))
    staging = DBT_PROJECT_DIR / "target" / "iceberg_staging"
    before = set(staging.iterdir()) if staging.exists() else set()
    processes = [
        subprocess.Popen(
            [
                dbt_executable(),
                "build",
                "--quiet",
                "--select",
                models,
                "--target-path",
                str(tmp_path / f"target-{days}"),
            ],  # fmt: skip
            cwd=DBT_PROJECT_DIR,
            env={**env, "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _, days, env in runs
    ]
    for process in processes:
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output
    for catalog, days, _ in runs:
        silver = catalog.load_table("silver.page_views").scan().to_arrow()
        daily = gold(catalog, "daily_page_views", lambda r: r["view_date"])
        assert sum(r["page_views"] for r in daily.values()) == silver.num_rows
        assert len(daily) == days
    left = set(staging.iterdir()) - before if staging.exists() else set()
    assert not left, f"staging left behind: {sorted(map(str, left))}"
