"""Every contract rule as a Dagster asset check, built from the contract alone.

``fail`` rules are blocking (downstream assets of the run do not materialize when
they fail), ``warn`` rules report WARN severity, ``quarantine`` rules pass when the
silver table holds no violating row and report what was set aside. Each result
carries the failing row count and up to ten failing rows in its metadata.

A check reads only the rows that changed since its last good evaluation
(``lakehouse.quality.scope``); run it with config ``full: true`` to read them all.
Either way it holds a bucket of keys at a time, not the rows in scope
(``lakehouse.quality.table_checks``). The checks are declared from the contracts alone;
what evaluates them (pandera, pandas, pyarrow, pyiceberg) is imported when they run.
"""

import re
from collections.abc import Iterable

import dagster as dg

from lakehouse.orchestration.k8s import k8s_tags
from lakehouse.quality.policy import Contract, Policy
from resources.iceberg import IcebergCatalogResource

HISTORY_LOOKBACK = 50  # evaluations searched for the last good one; beyond: evaluate all


class QualityCheckConfig(dg.Config):
    """``full``: evaluate every row, not only what changed since the last good evaluation."""

    full: bool = False


def check_name(rule: str) -> str:
    return "contract_" + re.sub(r"[^A-Za-z0-9_]", "_", rule)


def _description(contract: Contract, rule: str) -> str:
    policy = contract.policy(rule)
    effect = {
        Policy.FAIL: "blocking: downstream assets do not materialize when it fails",
        Policy.WARN: "advisory: rows flow, the check warns",
        Policy.QUARANTINE: f"violating rows are moved to {contract.quarantine_table}",
    }[policy]
    return f"{contract.table} contract rule `{rule}` ({policy}: {effect})."


def contract_checks(contract: Contract) -> dg.AssetChecksDefinition:
    key = dg.AssetKey(contract.asset_key)
    specs = [
        dg.AssetCheckSpec(
            check_name(rule),
            asset=key,
            blocking=contract.policy(rule) is Policy.FAIL,
            description=_description(contract, rule),
            metadata={"lakehouse/rule": rule, "lakehouse/policy": str(contract.policy(rule))},
        )
        for rule in contract.rules
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{'_'.join(contract.asset_key)}_contract",
        description=f"pandera contract of {contract.table}, one check per rule.",
        # a check holds a bucket of keys in pandas and spills the rest to local disk, as a
        # silver build does: sized like one
        op_tags=k8s_tags("arrow"),
    )
    def _checks(
        context: dg.AssetCheckExecutionContext,
        config: QualityCheckConfig,
        iceberg: IcebergCatalogResource,
    ):
        from pyiceberg.exceptions import NoSuchTableError

        from lakehouse.quality.scope import CHECKED_SNAPSHOT, SCOPE, changed_scope, full
        from lakehouse.quality.table_checks import check_table

        catalog = iceberg.load()
        try:
            table = catalog.load_table(contract.table)
        except NoSuchTableError:
            for rule in contract.rules:
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name=check_name(rule),
                    passed=False,
                    metadata={"error": f"{contract.table} does not exist"},
                )
            return
        snapshot = table.current_snapshot()
        if config.full:
            scope = full("requested by the run's config (full: true)")
        else:
            rules = [
                (dg.AssetCheckKey(key, check_name(r)), contract.policy(r) is Policy.WARN)
                for r in contract.rules
            ]
            since = last_good_snapshot(context.instance, table, rules)
            scope = changed_scope(catalog, table, contract.table, since)
        evaluation = check_table(table, contract, scope)
        quarantined = (
            _quarantined_by_rule(catalog, contract)
            if any(contract.policy(r) is Policy.QUARANTINE for r in contract.rules)
            else {}
        )
        for rule in contract.rules:
            outcome = evaluation.outcomes[rule]
            policy = outcome.policy
            metadata = {
                "policy": str(policy),
                CHECKED_SNAPSHOT: str(snapshot.snapshot_id if snapshot else ""),
                SCOPE: dg.MetadataValue.json(scope.metadata()),
                "rows_checked": evaluation.rows,
                "failing_rows": outcome.failing_rows,
                "failing_examples": dg.MetadataValue.json(outcome.examples),
            }
            if policy is Policy.QUARANTINE:
                count, examples = quarantined.get(rule, (0, []))
                metadata["rows_quarantined"] = count
                metadata["quarantined_examples"] = dg.MetadataValue.json(examples)
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=check_name(rule),
                passed=outcome.passed,
                severity=dg.AssetCheckSeverity.WARN
                if policy is Policy.WARN
                else dg.AssetCheckSeverity.ERROR,
                metadata=metadata,
            )

    return _checks


def last_good_snapshot(
    instance: dg.DagsterInstance, table, checks: Iterable[tuple[dg.AssetCheckKey, bool]]
) -> int | None:
    """The oldest of the snapshots each check last passed on (or ran on, when the flag
    says a failure counts: a warn rule), from the metadata of its evaluations.

    None when a check has no such evaluation (or its snapshot is gone): evaluate all.
    """
    from lakehouse.quality.scope import CHECKED_SNAPSHOT

    oldest: tuple[int, int] | None = None
    for check_key, failure_counts in checks:
        evaluation = None
        for limit in (3, HISTORY_LOOKBACK):  # this run's planned record, then the last one
            records = instance.event_log_storage.get_asset_check_execution_history(
                check_key, limit=limit
            )
            evaluations = [r.event.asset_check_evaluation for r in records if r.event]
            evaluation = next((e for e in evaluations if e and (failure_counts or e.passed)), None)
            if evaluation is not None or len(records) < limit:
                break
        recorded = evaluation.metadata.get(CHECKED_SNAPSHOT) if evaluation else None
        if recorded is None or not str(recorded.value):
            return None
        snapshot = table.metadata.snapshot_by_id(int(recorded.value))
        if snapshot is None:
            return None
        if oldest is None or snapshot.sequence_number < oldest[0]:
            oldest = (snapshot.sequence_number, snapshot.snapshot_id)
    return oldest[1] if oldest else None


def _quarantined_by_rule(catalog, contract: Contract) -> dict[str, tuple[int, list[dict]]]:
    """Rows quarantined per rule, with ten of each: the rule column is counted, and only
    the examples' raw rows are read (a quarantine can grow as large as its table)."""
    import pyarrow.compute as pc
    from pyiceberg.exceptions import NoSuchTableError
    from pyiceberg.expressions import EqualTo

    try:
        table = catalog.load_table(contract.quarantine_table)
    except NoSuchTableError:
        return {}
    rules = table.scan(selected_fields=("_rule",)).to_arrow()["_rule"]
    out: dict[str, tuple[int, list[dict]]] = {}
    for counted in pc.value_counts(rules).to_pylist():
        rule = counted["values"]
        if rule is None:
            continue
        shown = table.scan(
            row_filter=EqualTo("_rule", rule),
            selected_fields=("_rule", "_reason", "_raw"),
            limit=10,
        )
        out[rule] = (counted["counts"], shown.to_arrow().to_pylist())
    return out
