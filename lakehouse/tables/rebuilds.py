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
from pyiceberg.table.snapshots import Snapshot

from lakehouse.tables.commits import last_write

BUILT_FROM_KEY = "lakehouse.bronze-snapshot-id"


def superseded_by(target: Table, source: Table, built_from: Snapshot | None) -> int | None:
    """The newer source snapshot ``target`` was already built from, if any.

    ``built_from`` is the source snapshot this rebuild read, held since it read it:
    its sequence number is known even if maintenance has expired it meanwhile (a
    source may keep less history than its target).
    """
    current = last_write(target)  # past a compaction, which records no build
    recorded = current.summary[BUILT_FROM_KEY] if current and current.summary else None
    if not recorded or built_from is None:
        return None
    source.refresh()
    theirs = source.metadata.snapshot_by_id(int(recorded))
    if theirs is None:
        return None  # expired: older than anything a running rebuild can have read
    return theirs.snapshot_id if theirs.sequence_number > built_from.sequence_number else None
