"""The quality score: the share of rows that passed every contract rule.

Reported as materialization metadata under ``lakehouse/quality_score`` (a float, so
the Dagster UI plots it over the asset's materializations) and per partition value
(``lakehouse/quality_score_by_partition``). Rows rejected before the contract ran
(unparseable values) count as failed. Seed target: above 0.95.

Silver builds incrementally, so a materialization scores the rows it evaluated: the
new rows of an incremental build, every row of a full one. A build that evaluated no
row reports no score (it would plot a perfect 1.0 for no data).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from lakehouse.quality.policy import Contract, Enforced, Policy, score_by_partition

SCORE_KEY = "lakehouse/quality_score"
PARTITION_SCORE_KEY = "lakehouse/quality_score_by_partition"
TARGET = 0.95


def quality_metadata(
    contract: Contract, enforced: Enforced, earlier_rejects: int = 0
) -> dict[str, Any]:
    violations = {
        rule: outcome.failing_rows
        for rule, outcome in enforced.evaluation.outcomes.items()
        if outcome.failing_rows
    }
    evaluated = enforced.evaluation.rows + earlier_rejects
    scores = {
        SCORE_KEY: dg.FloatMetadataValue(enforced.quality_score(earlier_rejects)),
        PARTITION_SCORE_KEY: dg.MetadataValue.json(score_by_partition(contract, enforced)),
    }
    return {
        **(scores if evaluated else {}),
        "lakehouse/rows_evaluated": evaluated,
        "lakehouse/rule_violations": dg.MetadataValue.json(violations),
        "lakehouse/rows_warned": len(enforced.evaluation.failing_index(Policy.WARN)),
        "lakehouse/rows_failing_blocking_rules": len(
            enforced.evaluation.failing_index(Policy.FAIL)
        ),
    }
