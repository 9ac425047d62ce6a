"""Column descriptions for the Dagster UI, from where the project already writes them.

Silver's columns are documented once, in dbt's ``models/sources.yml`` (dbt docs and
the dbt tests read them there); the lineage and version columns the pipeline adds are
documented beside their layouts (``declarations.layouts.SYSTEM_COLUMN_DOCS``). Only
the parsed manifest is read (JSON, no dbt import), once per process, from where
dagster-dbt's project says it is (a step has imported dagster-dbt already).
"""

from __future__ import annotations

import json
from functools import cache

from lakehouse.dbt.project import dbt_project
from lakehouse.declarations.layouts import SYSTEM_COLUMN_DOCS

HISTORY_SUFFIX = "_history"


@cache
def _source_columns() -> dict[str, dict[str, str]]:
    """``{"<schema>.<table>": {column: description}}`` of every dbt source."""
    try:
        manifest = json.loads(dbt_project.manifest_path.read_text())
    except (OSError, ValueError):
        return {}  # not parsed yet: the UI shows the columns without descriptions
    return {
        f"{source['schema']}.{source['name']}": {
            name: column["description"]
            for name, column in source.get("columns", {}).items()
            if column.get("description")
        }
        for source in manifest.get("sources", {}).values()
    }


def column_descriptions(table: str) -> dict[str, str]:
    """What each column of ``<namespace>.<table>`` holds; a history table shares its
    current table's columns."""
    documented = _source_columns()
    described = documented.get(table)
    if described is None and table.endswith(HISTORY_SUFFIX):
        described = documented.get(table.removesuffix(HISTORY_SUFFIX))
    return {**SYSTEM_COLUMN_DOCS, **(described or {})}
