"""Contracts and their policies: rule naming and splitting (pure), then each policy on real
tables through Kafka, Iceberg and dbt, and what the UI reads back over GraphQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from pyiceberg.exceptions import NoSuchTableError

from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
from lakehouse.declarations.sources import CdcSource, sources
from lakehouse.defs.silver.contract_checks import check_name
from lakehouse.defs.silver.reconciliation import page_views_reconcile
from lakehouse.defs.silver.score import SCORE_KEY
from lakehouse.quality.contracts import PAGE_VIEWS, default_cdc_contract
from lakehouse.quality.policy import PANDERA_ENVIRONMENT, Policy, enforce, evaluate
from lakehouse.quality.scope import Scope, new_bronze_runs
from lakehouse.quality.table_checks import check_table
from lakehouse.tables.commits import ensure_table
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource

HASHED = "a" * 64
SELECTION = [
    dg.AssetKey(["bronze", "clickstream"]),
    dg.AssetKey(["quarantine", "clickstream"]),
    dg.AssetKey(["silver", "page_views"]),
    dg.AssetKey(["quarantine", "page_views"]),
    dg.AssetKey(["gold", "daily_page_views"]),
]


def _frame(**overrides):
    ts = pd.to_datetime(["2026-11-01T10:00Z", "2026-11-01T11:00Z", "2026-11-02T09:00Z"], utc=True)
    base = {
        "event_id": ["e1", "e2", "e3"],
        "user_id": [HASHED] * 3,
        "session_id": ["s1", "s1", "s2"],
        "page": ["/", "/cart", "/product/p-1"],
        "product_id": [None, None, "p-1"],
        "event_ts": ts,
        "event_date": [t.date() for t in ts],
        "_kafka_partition": [0, 0, 1],
        "_kafka_offset": [0, 1, 0],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def test_each_policy_splits_or_flags_exactly_the_violating_rows():
    df = _frame(
        page=["/", "cart", "/product/p-1"],  # quarantine
        product_id=[None, None, None],  # product page without product: warn
        event_ts=pd.to_datetime(
            ["2026-11-01T10:00Z", "2026-11-01T11:00Z", "1999-12-31T23:00Z"], utc=True
        ),  # fail (and event_date no longer matches)
    )
    enforced = enforce(PAGE_VIEWS, df)
    assert enforced.quarantined["event_id"].tolist() == ["e2"]
    assert enforced.quarantined["_rule"].tolist() == ["page:str_startswith"]
    assert enforced.passed["event_id"].tolist() == ["e1", "e3"]
    outcomes = enforced.evaluation.outcomes
    assert outcomes["product_page_has_product_id"].policy is Policy.WARN
    assert outcomes["product_page_has_product_id"].index == {2}
    assert outcomes["event_ts:greater_than_or_equal_to"].policy is Policy.FAIL
    assert outcomes["event_ts:greater_than_or_equal_to"].examples[0]["event_id"] == "e3"
    assert outcomes["event_id:field_uniqueness"].passed
    assert enforced.quality_score() == pytest.approx(1 / 3)


def test_clean_rows_score_one_and_schema_failures_always_fail():
    assert enforce(PAGE_VIEWS, _frame()).quality_score() == 1.0
    broken = enforce(PAGE_VIEWS, _frame().drop(columns=["page"]))
    assert not broken.evaluation.outcomes["schema"].passed
    assert PAGE_VIEWS.policy("schema") is Policy.FAIL


def test_a_cdc_table_without_a_declared_contract_gets_one_from_sources_yml():
    orders = CdcSource(
        name="order_items",
        topic="shop.public.order_items",
        keys=("order_id", "line"),
        columns={"order_id": "string", "line": "int", "buyer_email": "string"},
        pii={"buyer_email": "hash"},
    )
    contract = default_cdc_contract(orders)
    assert contract.table == "silver.order_items"
    assert "multiple_fields_uniqueness" in contract.rules
    assert "buyer_email:str_matches" in contract.rules
    df = pd.DataFrame(
        {"order_id": ["o1", "o1", None], "line": [1, 1, 2], "buyer_email": ["x@y", HASHED, HASHED]}
    )
    outcomes = enforce(contract, df).evaluation.outcomes
    assert outcomes["multiple_fields_uniqueness"].index == {0, 1}
    assert outcomes["order_id:not_nullable"].index == {2}
    assert outcomes["buyer_email:str_matches"].index == {0}
    assert all(contract.policy(r) is Policy.FAIL for r in contract.rules)


def test_policies_name_only_rules_the_contract_has():
    from lakehouse.quality.policy import Contract

    with pytest.raises(ValueError, match="unknown rules"):
        Contract("silver.page_views", PAGE_VIEWS.columns, policies={"no_such_rule": Policy.WARN})


# --- on real tables ---------------------------------------------------------------


def _event(n: int, **overrides) -> dict:
    ts = datetime(2026, 11, 1, 8, tzinfo=UTC) + timedelta(minutes=7 * n)
    event = {
        "event_id": f"q-{n:04d}",
        "event_type": "page_view",
        "user_id": f"u-{n % 5:05d}",
        "session_id": f"s-{n % 3}",
        "page": "/search",
        "product_id": None,
        "ts": ts.isoformat().replace("+00:00", "Z"),
    }
    event.update(overrides)
    return event


def _publish(settings, events: list[dict]) -> None:
    topic = sources().kafka_source("clickstream").resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    try:
        for event in events:
            producer.send(topic, key=event["user_id"].encode(), value=json.dumps(event).encode())
        producer.flush()
    finally:
        producer.close()


def _run(defs, instance, run_config=None):
    return defs.resolve_job_def("lakehouse").execute_in_process(
        instance=instance, asset_selection=SELECTION, raise_on_error=False, run_config=run_config
    )


def _checks(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


CHECKS_QUERY = """
query ($path: [String!]!) {
  assetNodes(assetKeys: [{path: $path}]) {
    assetChecksOrError {
      ... on AssetChecks {
        checks {
          name
          blocking
          executionForLatestMaterialization {
            status
            evaluation {
              severity
              metadataEntries { label ... on JsonMetadataEntry { jsonString } }
            }
          }
        }
      }
    }
  }
  assetOrError(assetKey: {path: $path}) {
    ... on Asset {
      assetMaterializations(limit: 10) {
        metadataEntries { label ... on FloatMetadataEntry { floatValue } }
      }
    }
  }
}
"""


@pytest.mark.timeout(900)
def test_warn_lets_rows_flow_quarantine_moves_exactly_the_failing_rows(
    lakehouse_env, defs, tmp_path
):
    good = [_event(n) for n in range(30)]
    bad_page = _event(30, page="search")  # quarantine
    no_product = _event(31, page="/product/p-9")  # warn: product page, no product_id
    _publish(lakehouse_env, [*good, bad_page, no_product])

    with dg.instance_for_test() as instance:
        result = _run(defs, instance)
        assert result.success
        checks = _checks(result)
        warn = checks[check_name("product_page_has_product_id")]
        assert not warn.passed and warn.severity is dg.AssetCheckSeverity.WARN
        examples = warn.metadata["failing_examples"].value
        assert [e["event_id"] for e in examples] == ["q-0031"]
        quarantine_check = checks[check_name("page:str_startswith")]
        assert quarantine_check.passed
        assert quarantine_check.metadata["rows_quarantined"].value == 1
        blocking = [c for c in checks.values() if c.blocking]
        assert blocking and all(c.passed for c in blocking)
        materialized = {
            e.event_specific_data.materialization.asset_key
            for e in result.get_asset_materialization_events()
        }
        assert dg.AssetKey(["gold", "daily_page_views"]) in materialized

        catalog = IcebergCatalogResource().load()
        silver = catalog.load_table("silver.page_views").scan().to_arrow()
        assert sorted(silver["event_id"].to_pylist()) == sorted(
            e["event_id"] for e in [*good, no_product]
        )
        quarantined = catalog.load_table("quarantine.page_views").scan().to_arrow().to_pylist()
        assert [(r["_rule"], json.loads(r["_raw"])["event_id"]) for r in quarantined] == [
            ("page:str_startswith", "q-0030")
        ]
        assert "u-000" not in quarantined[0]["_raw"]  # PII masked in quarantine as well
        gold = catalog.load_table("gold.daily_page_views").scan().to_arrow()
        assert sum(gold["page_views"].to_pylist()) == len(good) + 1  # the warned row flowed

        # a second run: the score is plotted over materializations; it rebuilds silver in
        # full (an incremental build with nothing new evaluates no row, so plots no score)
        # and its checks read every row (an incremental check would not repeat the warning
        # about unchanged rows)
        full = {
            "ops": {
                "silver_page_views": {"config": {"full": True}},
                "silver_page_views_contract": {"config": {"full": True}},
            }
        }
        assert _run(defs, instance, full).success
        # 30 of 32 rows passed every rule (one quarantined, one warned)
        _assert_ui_shows_checks_and_scores(instance, 30 / 32)


def _assert_ui_shows_checks_and_scores(instance, score: float) -> None:
    """What the UI renders, asked the way the UI asks: GraphQL against the code location."""
    from pathlib import Path

    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    definitions = str(Path(__file__).resolve().parents[1] / "lakehouse" / "definitions.py")
    with define_out_of_process_context(definitions, "defs", instance) as context:
        result = execute_dagster_graphql(
            context, CHECKS_QUERY, variables={"path": ["silver", "page_views"]}
        )
    assert not result.errors, result.errors
    checks = {
        c["name"]: c
        for node in result.data["assetNodes"]
        for c in node["assetChecksOrError"]["checks"]
    }
    warn = checks[check_name("product_page_has_product_id")]
    assert warn["executionForLatestMaterialization"]["status"] == "FAILED"
    evaluation = warn["executionForLatestMaterialization"]["evaluation"]
    assert evaluation["severity"] == "WARN"
    entries = {e["label"]: e for e in evaluation["metadataEntries"]}
    assert "q-0031" in entries["failing_examples"]["jsonString"]
    assert checks[check_name("event_ts:greater_than_or_equal_to")]["blocking"] is True
    scores = [
        e["floatValue"]
        for m in result.data["assetOrError"]["assetMaterializations"]
        for e in m["metadataEntries"]
        if e["label"] == SCORE_KEY
    ]
    assert scores == [pytest.approx(score), pytest.approx(score)]


@pytest.mark.timeout(900)
def test_a_fail_rule_blocks_the_downstream_gold_model_in_the_same_run(lakehouse_env, defs):
    broken_clock = _event(40, ts="1999-12-31T23:59:00Z")  # fail: before the clock floor
    _publish(lakehouse_env, [*(_event(n) for n in range(10)), broken_clock])
    with dg.instance_for_test() as instance:
        result = _run(defs, instance)
        assert not result.success
        check = _checks(result)[check_name("event_ts:greater_than_or_equal_to")]
        assert not check.passed and check.blocking
        assert check.severity is dg.AssetCheckSeverity.ERROR
        assert [e["event_id"] for e in check.metadata["failing_examples"].value] == ["q-0040"]
        materialized = {
            e.event_specific_data.materialization.asset_key
            for e in result.get_asset_materialization_events()
        }
        assert dg.AssetKey(["silver", "page_views"]) in materialized
        assert dg.AssetKey(["gold", "daily_page_views"]) not in materialized
    with pytest.raises(NoSuchTableError):
        IcebergCatalogResource().load().load_table("gold.daily_page_views")


def test_every_silver_table_gets_one_check_per_rule_blocking_exactly_for_fail(defs):
    from lakehouse.defs.silver.contract_checks import contract_checks
    from lakehouse.quality.contracts import silver_contracts

    contracts = silver_contracts()
    assert {c.table for c in contracts} >= {"silver.page_views", "silver.customers"}
    in_defs = defs.get_repository_def().asset_graph.asset_check_keys
    for contract in contracts:
        specs = {s.name: s for s in contract_checks(contract).check_specs}
        for rule in contract.rules:
            spec = specs[check_name(rule)]
            assert spec.key in in_defs
            assert spec.blocking == (contract.policy(rule) is Policy.FAIL), rule


FULL = {"full": True}


def _day_two(n: int) -> dict:
    ts = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(minutes=n)
    return _event(n, ts=ts.isoformat().replace("+00:00", "Z"))


@pytest.mark.timeout(900)
def test_checks_read_only_what_changed_and_a_full_check_still_finds_old_rows(lakehouse_env, defs):
    first = [*(_event(n) for n in range(20)), _event(20, page="/product/p-9")]  # 20 warns
    _publish(lakehouse_env, [*first, _event(21, page="search")])  # 21 is quarantined
    warn = check_name("product_page_has_product_id")
    unique = check_name("event_id:field_uniqueness")
    with dg.instance_for_test() as instance:
        checks = _checks(_run(defs, instance))
        assert not checks[warn].passed
        assert checks[warn].metadata["lakehouse/check_scope"].value["mode"] == "full"
        assert checks[warn].metadata["rows_checked"].value == 21

        # a new day, all good, one record delivered twice: the old warning is not repeated
        second = [_day_two(n) for n in range(40, 50)]
        _publish(lakehouse_env, [*second, second[0]])
        checks = _checks(_run(defs, instance))
        scope = checks[warn].metadata["lakehouse/check_scope"].value
        assert scope["mode"] == "incremental" and scope["values"] == ["2026-11-02"], scope
        assert checks[warn].passed and checks[warn].metadata["rows_checked"].value == 10
        assert checks[unique].passed and checks[unique].metadata["rows_checked"].value == 10
        reconciled = checks["page_views_reconcile"]
        assert reconciled.passed
        assert reconciled.metadata["lakehouse/check_scope"].value["mode"] == "incremental"
        by_day = reconciled.metadata["by_bronze_partition"].value
        assert sum(c["bronze"] for c in by_day.values()) == 11  # only the new records
        assert sum(c["silver"] for c in by_day.values()) == 10
        assert sum(c.get("deduplicated", 0) for c in by_day.values()) == 1

        # the full check (config) reads everything again and finds the old warning
        only_checks = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_check_selection={
                dg.AssetCheckKey(dg.AssetKey(["silver", "page_views"]), n)
                for n in (*map(check_name, PAGE_VIEWS.rules), "page_views_reconcile")
            },
            asset_selection=set(),
        )
        rerun = only_checks.execute_in_process(
            instance=instance,
            run_config={
                "ops": {
                    "silver_page_views_contract": {"config": FULL},
                    page_views_reconcile.node_def.name: {"config": FULL},
                }
            },
        )
        checks = _checks(rerun)
        assert checks[warn].metadata["lakehouse/check_scope"].value["mode"] == "full"
        assert not checks[warn].passed and checks[warn].metadata["rows_checked"].value == 31
        examples = checks[warn].metadata["failing_examples"].value
        assert [e["event_id"] for e in examples] == ["q-0020"]
        by_day = checks["page_views_reconcile"].metadata["by_bronze_partition"].value
        counts = {k: sum(c.get(k, 0) for c in by_day.values()) for k in ("bronze", "silver")}
        assert counts == {"bronze": 33, "silver": 31}  # + 1 quarantined + 1 deduplicated
        assert checks["page_views_reconcile"].passed


def test_a_new_row_whose_key_an_old_row_outside_the_scope_holds_breaks_uniqueness(
    lakehouse_env,
):
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    rows = _frame(event_id=["e1", "e2", "e1"], user_id=[HASHED] * 3)  # e1 on days 1 and 2
    table.append(pa.Table.from_pandas(rows, schema=SILVER_PAGE_VIEWS.arrow_schema()))
    scope = Scope("test: day two changed", "event_date", frozenset({date(2026, 11, 2)}))
    in_scope = table.scan(row_filter=scope.row_filter).to_pandas()
    rule = "event_id:field_uniqueness"
    assert len(in_scope) == 1 and evaluate(PAGE_VIEWS, in_scope).outcomes[rule].passed  # alone
    evaluation = check_table(table, PAGE_VIEWS, scope)
    assert evaluation.rows == 1 and evaluation.outcomes[rule].failing_rows == 1
    example = evaluation.outcomes[rule].examples[0]
    assert example["event_id"] == "e1" and example["found_outside_scope"] is True


def test_a_check_whose_bronze_snapshot_expired_checks_everything_and_says_why(
    page_views_rebuilds,
):
    """Bronze may keep less history than silver (a source's snapshot_retention_hours):
    the bronze runs since the last good evaluation can then not be listed."""
    t = page_views_rebuilds
    first = t.bronze_commit()
    since = t.rebuild(first)
    t.rebuild(t.bronze_commit())
    assert new_bronze_runs(t.silver, t.bronze, since)[0] is not None  # listed while kept
    t.bronze.maintenance.expire_snapshots().by_id(first.snapshot_id).commit()
    runs, reason = new_bronze_runs(t.silver, t.bronze, since)
    assert runs is None
    assert f"bronze snapshot {first.snapshot_id} is expired" in reason


def test_evaluating_a_contract_leaves_arrows_timestamps_alone():
    """pandera's first import sets PYARROW_IGNORE_TIMEZONE when pyspark is installed, and
    pyarrow then converts an aware datetime by its wall time: 03:04:05+02:00 landed as
    03:04:05 UTC. A fresh process, as a step is: evaluate a contract, then convert."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in PANDERA_ENVIRONMENT}
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT_AFTER_A_CONTRACT],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    instant, leftovers = json.loads(done.stdout.strip().splitlines()[-1])
    assert instant == int(datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC).timestamp())
    assert leftovers == []


_CONVERT_AFTER_A_CONTRACT = """
import json, os
from datetime import datetime, timedelta, timezone
import pandas as pd
import pyarrow as pa
from lakehouse.quality.contracts import PAGE_VIEWS
from lakehouse.quality.policy import PANDERA_ENVIRONMENT, evaluate

evaluate(PAGE_VIEWS, pd.DataFrame({"event_id": ["e1"]}))
aware = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
instant = pa.array([aware], pa.timestamp("s", "UTC")).cast(pa.int64())[0].as_py()
print(json.dumps([instant, [n for n in PANDERA_ENVIRONMENT if n in os.environ]]))
"""
