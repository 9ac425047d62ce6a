"""The run history tables as assets of the ``ops`` group.

They are written by the run status sensors (``sensors.py``), not by a run: each is an
external asset whose materializations the sensor reports, so the lineage page shows
them, their metadata plots rows per run, and dbt sources line up with them by key.
"""

import warnings

import dagster as dg

OPS_GROUP = "ops"
# Dagster links defined assets to their source itself; a spec written by a sensor says it
# (the classes are beta in Dagster 1.13: the warning says nothing a user can act on)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    _HERE = {
        "dagster/code_references": dg.CodeReferencesMetadataValue(
            code_references=[dg.LocalFileCodeReference(file_path=__file__)]
        )
    }

pipeline_runs = dg.AssetSpec(
    key=["ops", "pipeline_runs"],
    group_name=OPS_GROUP,
    kinds={"iceberg"},
    metadata=_HERE,
    description="One row per finished run (success, failure, cancellation): job, partition "
    "or window, start, end, duration, rows written and quarantined per asset, quality "
    "scores, error class and message. Written exactly once per run by the run status "
    "sensors.",
)

asset_materializations = dg.AssetSpec(
    key=["ops", "asset_materializations"],
    group_name=OPS_GROUP,
    kinds={"iceberg"},
    metadata=_HERE,
    description="One row per asset materialization of a finished run: rows written and "
    "quarantined, the table's row count, quality score and Iceberg snapshot.",
)
