"""dbt's scratch on local disk, removed once it is a day old.

Each dbt invocation leaves some: dagster-dbt's target directory per invocation and the
plugin's staging directory of external models (removed when dbt exits, but not when it
is killed). Nothing else removes them, so every invocation removes what is over a day
old: no gold run takes that long, and a recent run's compiled SQL and logs stay to read.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

STALE_S = 86_400


def remove_stale(
    root: Path, name: re.Pattern[str] | None = None, older_than_s: float = STALE_S
) -> list[Path]:
    """Remove the entries of ``root`` (those whose name matches ``name``, if given) not
    modified for ``older_than_s``; the removed paths."""
    cutoff = time.time() - older_than_s
    removed = []
    for entry in root.iterdir() if root.is_dir() else ():
        if name is not None and not name.fullmatch(entry.name):
            continue
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed
