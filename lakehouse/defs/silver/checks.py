"""Every check on silver: contracts (one check per rule), reconciliation with bronze, freshness.

The rules themselves live in ``lakehouse.quality``; this module turns them into asset checks.
The ``new_columns_classified`` check is reported by each silver asset's own step.
"""

import dagster as dg

from lakehouse.declarations.sources import sources
from lakehouse.defs.silver.contract_checks import contract_checks
from lakehouse.defs.silver.reconciliation import (
    cdc_reconcile_check,
    history_reconcile_check,
    page_views_reconcile,
)
from lakehouse.orchestration.freshness import SILVER_WINDOW, last_update_checks
from lakehouse.quality.contracts import silver_contracts


def silver_asset_keys() -> list[dg.AssetKey]:
    names = ["page_views"]
    for cdc in sources().cdc:
        names += [cdc.name, f"{cdc.name}_history"]
    names += [s.name for s in (*sources().database, *sources().landing)]
    return [dg.AssetKey(["silver", n]) for n in names]


contract_rule_checks = [contract_checks(c) for c in silver_contracts()]

reconciliation_checks = [
    page_views_reconcile,
    *(cdc_reconcile_check(s) for s in sources().cdc),
    *(history_reconcile_check(s) for s in sources().cdc),
]

silver_freshness_checks = last_update_checks(silver_asset_keys(), SILVER_WINDOW)
