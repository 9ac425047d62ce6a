"""Guarding full rebuilds (silver from bronze) against a slower, older rebuild.

A rebuild records the snapshot of its input it was computed from
(``lakehouse.bronze-snapshot-id``). Two rebuilds can race: one started on an older
bronze snapshot may reach its commit after one started on a newer snapshot. The
older must then not overwrite the newer; each checks, just before committing, what
the target was last built from. The commit itself fails if another landed in
between (``commit.retry.num-retries=0``), and the retry checks again.
"""

from __future__ import annotations

from pyiceberg.table import Table

BUILT_FROM_KEY = "lakehouse.bronze-snapshot-id"


def superseded_by(target: Table, source: Table, built_from: int | None) -> int | None:
    """The newer source snapshot ``target`` was already built from, if any."""
    current = target.current_snapshot()
    recorded = current.summary[BUILT_FROM_KEY] if current and current.summary else None
    if not recorded or built_from is None:
        return None
    source.refresh()
    theirs = source.metadata.snapshot_by_id(int(recorded))
    ours = source.metadata.snapshot_by_id(built_from)
    if theirs is None:
        return None  # expired: older than the snapshot this rebuild read
    if ours is None:
        # ours expired and theirs did not: bronze history is one line, so theirs is newer
        return theirs.snapshot_id
    return theirs.snapshot_id if theirs.sequence_number > ours.sequence_number else None
