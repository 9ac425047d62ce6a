"""What every silver build shares: its run config, and the shape its table is computed with.

A silver build is incremental (``lakehouse.tables.increments``): it applies only what
bronze appended since the bronze snapshot its last build recorded. It rebuilds from all
of bronze when what decides silver's contents changed since that build. That is the
"shape" recorded with every commit: the contract (rules and their policies), the
source's declaration (keys, declared and classified columns, PII policy, new-column
policy) and ``LOGIC_VERSION``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from lakehouse.declarations.sources import ConnectorModes, Source
from lakehouse.quality.policy import Contract

if TYPE_CHECKING:
    from lakehouse.silver.build import ColumnChanges
    from lakehouse.tables.increments import Plan

# Raise when the code that computes silver changes what it writes for the same bronze
# (a new column, a different dedup rule): every silver table is rebuilt once.
LOGIC_VERSION = 1

# Declaration fields that do not change silver's contents (a shorter bronze retention).
_NOT_SHAPING = {"snapshot_retention_hours", "dialect"}  # dialect: how bronze reads files
_DEFAULT_CONNECTOR = ConnectorModes().model_dump(mode="json")


class SilverBuildConfig(dg.Config):
    full: bool = Field(
        default=False,
        description="Rebuild from all of bronze instead of applying what bronze appended "
        "since the last build (needed only after a change the lakehouse cannot see, such "
        "as a fix to bronze data outside a materialization).",
    )


def contract_shape(contract: Contract | None) -> Any:
    """The contract's rules, the arguments of their checks and their policies."""
    if contract is None:
        return None
    columns = {
        name: {
            "dtype": str(column.dtype),
            "nullable": column.nullable,
            "unique": column.unique,
            "checks": [
                [c.name, sorted(map(str, (c.statistics or {}).items()))] for c in column.checks
            ],
        }
        for name, column in contract.schema.columns.items()
    }
    return {
        "columns": columns,
        "checks": [c.name for c in contract.schema.checks],
        "unique": contract.schema.unique,
        "policies": {rule: str(contract.policy(rule)) for rule in contract.rules},
    }


def silver_shape(source: Source, contract: Contract | None) -> dict[str, str]:
    """The shape a silver table of ``source`` is computed with (see the module docstring)."""
    from lakehouse.tables.increments import shape

    declaration = source.model_dump(mode="json", exclude=_NOT_SHAPING, warnings=False)
    if declaration.get("connector") == _DEFAULT_CONNECTOR:
        # the connector modes decide decoded values, so a change rebuilds silver; left
        # out at their defaults, so that declaring none keeps the shape it always had
        del declaration["connector"]
    return shape(
        {
            "contract": contract_shape(contract),
            "source": declaration,
            "pii": {c: str(p) for c, p in source.pii.items()},
            "logic": LOGIC_VERSION,
        }
    )


def log_build(context: dg.AssetExecutionContext, table: str, plan: Plan, columns: ColumnChanges):
    """What a build did, in the run's log: the columns it added, and its mode and why."""
    if columns.additions:
        context.log.info(f"schema evolved: added {sorted(columns.additions)} to {table}")
    context.log.info(f"{table}: {plan.mode} build ({plan.reason})")
