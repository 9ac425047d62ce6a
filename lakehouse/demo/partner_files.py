"""Partner CSV files for the landing bucket: daily marketing spend, a few bad rows."""

from __future__ import annotations

import random
from datetime import date, timedelta

CHANNELS = ["search", "social", "email", "display"]


def marketing_spend_files(scale: int = 1, seed: int = 11) -> dict[str, bytes]:
    """``{key: csv bytes}``: one file per day, plus one file with broken rows."""
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for d in range(3):
        day = date(2026, 11, 1) + timedelta(days=d)
        lines = ["spend_date,channel,campaign,spend,currency"]
        for channel in CHANNELS:
            for c in range(3 * scale):
                lines.append(
                    f"{day.isoformat()},{channel},{channel}-{c:03d},{rng.uniform(10, 500):.2f},EUR"
                )
        if d == 2:
            lines.append(f"{day.isoformat()},social,too,many,fields,here")
            lines.append(f"{day.isoformat()},email")
        files[f"marketing_spend/{day.isoformat()}.csv"] = ("\n".join(lines) + "\n").encode()
    return files
