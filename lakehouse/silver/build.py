"""What every silver build shares: its inputs, its run, and what it did with new columns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pyiceberg.catalog import Catalog
from pyiceberg.types import IcebergType

from lakehouse.tables.commits import quiet_empty_deletes, with_commit_retries
from lakehouse.transforms.masking import Masker


@dataclass
class ColumnChanges:
    """Columns the source started sending: added to the table (``additions``), carried
    beyond the declared layout (``evolved``), withheld until classified (``withheld``,
    with the number of values each held)."""

    additions: dict[str, IcebergType] = field(default_factory=dict)
    evolved: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)
    withheld_values: dict[str, int] = field(default_factory=dict)


@dataclass
class SilverBuild:
    """One build of a source's silver tables."""

    catalog: Catalog
    source: Any
    shape: dict[str, str]  # what the table is computed with (``tables.increments.shape``)
    run_id: str
    masker: Masker = field(default_factory=Masker.from_settings, kw_only=True)

    def run(self, full: bool = False) -> Any:
        """Build incrementally where the plan allows, else in full (``plan_build``).

        A build that loses a commit race to another plans again from what the winner
        recorded (``_run`` reloads the tables each attempt), so nothing is applied twice.
        """
        with quiet_empty_deletes():
            return with_commit_retries(lambda: self._run(full))

    def _run(self, full: bool) -> Any:
        raise NotImplementedError
