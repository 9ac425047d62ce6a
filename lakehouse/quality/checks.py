"""Every contract rule as a Dagster asset check, built from the contract alone.

``fail`` rules are blocking (downstream assets of the run do not materialize when
they fail), ``warn`` rules report WARN severity, ``quarantine`` rules pass when the
silver table holds no violating row and report what was set aside. Each result
carries the failing row count and up to ten failing rows in its metadata.
"""

import re

import dagster as dg
import pyarrow.compute as pc
from pyiceberg.exceptions import NoSuchTableError

from lakehouse.quality.policy import Contract, Policy, evaluate
from resources.iceberg import IcebergCatalogResource


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
    )
    def _checks(iceberg: IcebergCatalogResource):
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
        df = table.scan().to_pandas()
        evaluation = evaluate(contract, df)
        quarantined = _quarantined_by_rule(catalog, contract)
        for rule in contract.rules:
            outcome = evaluation.outcomes[rule]
            policy = outcome.policy
            metadata = {
                "policy": str(policy),
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


def _quarantined_by_rule(catalog, contract: Contract) -> dict[str, tuple[int, list[dict]]]:
    try:
        table = catalog.load_table(contract.quarantine_table)
    except NoSuchTableError:
        return {}
    rows = table.scan(selected_fields=("_rule", "_reason", "_raw")).to_arrow()
    out: dict[str, tuple[int, list[dict]]] = {}
    for rule in pc.unique(rows["_rule"]).to_pylist() if rows.num_rows else []:
        matching = rows.filter(pc.equal(rows["_rule"], rule))
        out[rule] = (matching.num_rows, matching.slice(0, 10).to_pylist())
    return out


def all_contract_checks(contracts: list[Contract]) -> list[dg.AssetChecksDefinition]:
    return [contract_checks(c) for c in contracts]
