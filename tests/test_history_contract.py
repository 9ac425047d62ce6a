"""The SCD2 history contract: each rule on small frames (pure), then on the real
silver.customers_history built from the demo's Debezium changes: every rule passes,
and each fails (blocking) once a version is broken with pyiceberg behind the pipeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.declarations.sources import sources
from lakehouse.defs.silver.contract_checks import check_name
from lakehouse.demo.load import publish_cdc
from lakehouse.quality.history import HISTORY_RULES, history_contract
from lakehouse.quality.policy import Policy, evaluate
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
HISTORY = dg.AssetKey(["silver", "customers_history"])
MATCHES = dg.AssetCheckKey(HISTORY, "history_matches_current")
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


def _source():
    return next(s for s in sources().cdc if s.name == "customers")


def _versions(*rows: tuple) -> pd.DataFrame:
    """(key, op, valid_from hour, valid_to hour or None, is_current, lsn) per version."""
    source = _source()
    contract_columns = {c: None for c in source.columns}
    out = []
    for key, op, start, end, current, lsn in rows:
        out.append(
            {
                **contract_columns,
                "customer_id": key,
                "_op": op,
                "_lsn": lsn,
                "valid_from": T0 + start * HOUR,
                "valid_to": None if end is None else T0 + end * HOUR,
                "is_current": current,
            }
        )
    frame = pd.DataFrame(out)
    frame["valid_to"] = pd.to_datetime(frame["valid_to"], utc=True)
    return frame


def _failing(frame: pd.DataFrame) -> dict[str, set]:
    evaluation = evaluate(history_contract(_source()), frame)
    return {r: o.index for r, o in evaluation.outcomes.items() if r in HISTORY_RULES and o.index}


def test_each_timeline_rule_flags_exactly_the_versions_that_break_it():
    good = _versions(
        ("c-1", "c", 0, 1, False, 1),
        ("c-1", "u", 1, 3, False, 2),  # then deleted at 3
        ("c-1", "c", 5, None, True, 3),  # re-inserted later: a gap is fine before a create
        ("c-2", "r", 0, None, True, 4),
        # one transaction: created, updated twice; a deleted and re-created row
        ("c-3", "c", 2, 2, False, 5),  # zero-length versions: superseded in their commit
        ("c-3", "u", 2, 2, False, 6),
        ("c-3", "u", 2, 4, False, 7),
        ("c-3", "c", 4, None, True, 8),  # deleted and re-created at 4
    )
    assert _failing(good) == {}
    assert _failing(_versions(("c-1", "c", 0, None, True, 1), ("c-1", "u", 1, None, True, 2))) == {
        "one_current_version_per_key": {0, 1},
        "versions_contiguous": {1},  # the first version never ended: they overlap
    }
    assert _failing(_versions(("c-1", "c", 2, 1, False, 1))) == {
        "valid_from_not_after_valid_to": {0}
    }
    gap = _versions(("c-1", "c", 0, 1, False, 1), ("c-1", "u", 2, None, True, 2))
    assert _failing(gap) == {"versions_contiguous": {1}}  # an update cannot follow a gap
    overlap = _versions(("c-1", "c", 0, 2, False, 1), ("c-1", "u", 1, None, True, 2))
    assert _failing(overlap) == {"versions_contiguous": {1}}
    assert _failing(_versions(("c-1", "c", 0, 1, True, 1))) == {"current_iff_open": {0}}
    assert _failing(_versions(("c-1", "c", 0, None, False, 1))) == {"current_iff_open": {0}}
    contract = history_contract(_source())
    assert all(contract.policy(r) is Policy.FAIL for r in contract.rules)
    assert "customer_id:not_nullable" in contract.rules
    assert "email:str_matches" in contract.rules  # masked PII stays masked in history


def _break(table, rows: pa.Table, how) -> str:
    """Overwrite the history with one deliberately broken version; returns its key."""
    frame = rows.to_pandas()
    counts = frame.groupby("customer_id").size()
    open_keys = set(frame.loc[frame["is_current"], "customer_id"])
    key = sorted(k for k in counts[counts >= 3].index if k in open_keys)[0]
    versions = frame[frame["customer_id"] == key].sort_values("valid_from").index
    how(frame, versions)
    table.overwrite(pa.Table.from_pandas(frame, schema=rows.schema, preserve_index=False))
    return key


def _add_current_twin(frame, versions):
    frame.loc[len(frame)] = frame.loc[versions[-1]].copy()
    frame.loc[len(frame) - 1, "_lsn"] = int(frame.loc[versions[-1], "_lsn"]) + 1


def _end_before_start(frame, versions):
    frame.loc[versions[0], "valid_to"] = frame.loc[versions[0], "valid_from"] - HOUR


def _overlap_next(frame, versions):
    frame.loc[versions[0], "valid_to"] = frame.loc[versions[1], "valid_from"] + HOUR


def _current_but_closed(frame, versions):
    frame.loc[versions[-1], "valid_to"] = frame.loc[versions[-1], "valid_from"] + HOUR


def _stale_current(frame, versions):
    frame.loc[versions[-1], "_lsn"] = int(frame.loc[versions[-1], "_lsn"]) - 1


BREAKS = {
    "one_current_version_per_key": _add_current_twin,
    "valid_from_not_after_valid_to": _end_before_start,
    "versions_contiguous": _overlap_next,
    "current_iff_open": _current_but_closed,
    "history_matches_current": _stale_current,
}


@pytest.mark.timeout(900)
def test_every_rule_passes_on_the_demo_and_fails_on_a_broken_history(lakehouse_env, defs):
    assert publish_cdc(lakehouse_env)
    job = defs.resolve_job_def("lakehouse")
    contract = history_contract(_source())
    rule_checks = {r: dg.AssetCheckKey(HISTORY, check_name(r)) for r in contract.rules}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=SELECTION)
        assert result.success
        evaluations = {c.asset_check_key: c for c in result.get_asset_check_evaluations()}
        for check in [*rule_checks.values(), MATCHES]:
            assert evaluations[check].passed, (check, evaluations[check].metadata)
        assert evaluations[MATCHES].metadata["current_rows"].value > 50
        assert evaluations[rule_checks["versions_contiguous"]].metadata["rows_checked"].value > 100

        table = IcebergCatalogResource().load().load_table("silver.customers_history")
        original = table.scan().to_arrow()
        assert pc.sum(pc.cast(original["is_current"], pa.int64())).as_py() > 50
        only_checks = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_check_selection={*rule_checks.values(), MATCHES}, asset_selection=set()
        )
        for rule, how in BREAKS.items():
            key = _break(table, original, how)
            run = only_checks.execute_in_process(instance=instance, raise_on_error=False)
            after = {c.asset_check_key.name: c for c in run.get_asset_check_evaluations()}
            broken = after[check_name(rule) if rule in rule_checks else rule]
            assert not broken.passed, rule
            examples = broken.metadata.get("failing_examples") or broken.metadata.get(
                "mismatch_examples"
            )
            assert key in str(examples.value), (rule, examples.value)
            assert rule in HISTORY_RULES or rule == "history_matches_current"
            # the written-behind-the-pipeline table is checked whole, whatever came before
            scope = broken.metadata.get("lakehouse/check_scope")
            assert scope is None or scope.value["mode"] == "full"
        table.overwrite(original)
        run = only_checks.execute_in_process(instance=instance)
        assert all(c.passed for c in run.get_asset_check_evaluations())


def _update_country(settings, catalog, country: str) -> str:
    """One more Debezium update of the latest-changed customer, as the connector would send."""
    source = _source()
    log = catalog.load_table(source.bronze_table).scan().to_arrow().to_pylist()
    changes = [r for r in log if r["op"] in ("c", "u", "r") and r["payload"]]
    latest = max(changes, key=lambda r: r["lsn"])
    document = json.loads(latest["payload"])
    change = document.get("payload", document)
    change["before"] = dict(change["after"])
    change["after"]["country"] = country
    change["op"] = "u"
    change["source"]["lsn"] = max(r["lsn"] for r in changes) + 1_000
    change["ts_ms"] = change["source"]["ts_ms"] = change["ts_ms"] + 60_000
    producer = KafkaResource().producer()
    try:
        topic = source.resolved_topic(settings.kafka_topic_prefix)
        producer.send(topic, key=latest["key"].encode(), value=json.dumps(document).encode())
        producer.flush()
    finally:
        producer.close()
    return change["after"]["customer_id"]


@pytest.mark.timeout(900)
def test_a_new_change_is_checked_by_its_key_alone(lakehouse_env, defs):
    assert publish_cdc(lakehouse_env)
    job = defs.resolve_job_def("lakehouse")
    catalog = IcebergCatalogResource().load()
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, asset_selection=SELECTION).success
        key = _update_country(lakehouse_env, catalog, "NL")
        result = job.execute_in_process(instance=instance, asset_selection=SELECTION)
        assert result.success
        checks = {
            c.asset_check_key.to_user_string(): c for c in result.get_asset_check_evaluations()
        }
        versions = catalog.load_table("silver.customers_history").scan(
            row_filter=EqualTo("customer_id", key)
        )
        for name in (
            "silver/customers_history:contract_versions_contiguous",
            "silver/customers_history:history_matches_current",
            "silver/customers:changelog_reconcile",
            "silver/customers:" + check_name("customer_id:field_uniqueness"),
        ):
            check = checks[name]
            scope = check.metadata["lakehouse/check_scope"].value
            assert check.passed, (name, check.metadata)
            assert scope["mode"] == "incremental" and scope["values"] == [key], (name, scope)
        contiguous = checks["silver/customers_history:contract_versions_contiguous"]
        assert contiguous.metadata["rows_checked"].value == versions.to_arrow().num_rows
        assert checks["silver/customers:changelog_reconcile"].metadata["changelog_keys"].value == 1
        current = catalog.load_table("silver.customers").scan(
            row_filter=EqualTo("customer_id", key)
        )
        assert current.to_arrow()["country"].to_pylist() == ["NL"]
