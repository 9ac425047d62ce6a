"""The WARN check ``new_columns_classified`` and the evolution metadata of silver builds.

What a build does with such columns (evolve, withhold) is ``lakehouse.silver.columns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.declarations.sources import (
    Source,
)

if TYPE_CHECKING:
    from lakehouse.silver.build import ColumnChanges

NEW_COLUMNS_CHECK = "new_columns_classified"


def new_columns_spec(key: list[str]) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NEW_COLUMNS_CHECK,
        asset=key,
        description="Columns the source started sending that sources.yml does not classify "
        "(as a declared column, under `plain` or under `pii`). Where the source carries PII "
        "(or says `new_columns: withhold`) they are withheld: added to this table but null "
        "until classified; bronze keeps the raw values. WARN while any is withheld.",
    )


def new_columns_result(
    key: list[str], source: Source, columns: ColumnChanges
) -> dg.AssetCheckResult:
    evolved, withheld = columns.evolved, columns.withheld_values
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=NEW_COLUMNS_CHECK,
        passed=not withheld,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"withheld until classified in sources.yml: {', '.join(withheld)}"
            if withheld
            else "every column is classified or allowed"
        ),
        metadata={
            "policy": str(source.new_column_policy),
            "evolved_columns": dg.MetadataValue.json(sorted(evolved)),
            "unclassified_columns": dg.MetadataValue.json(sorted(withheld)),
            "withheld_values": sum(withheld.values()),
            "withheld_values_per_column": dg.MetadataValue.json(withheld),
        },
    )


def evolution_metadata(columns: ColumnChanges) -> dict:
    return {
        "columns_added": dg.MetadataValue.json({n: str(t) for n, t in columns.additions.items()}),
        "columns_withheld": dg.MetadataValue.json(columns.withheld),
        "withheld_values": sum(columns.withheld_values.values()),
    }
