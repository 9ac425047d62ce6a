"""Contract-quarantined silver rows in the shared quarantine layout.

``_raw`` holds the row as silver would have stored it (PII already masked: the
quarantine namespace is read by more people than the source systems), and the Kafka
coordinates, when the table has them, point back at the bronze record, which is what
a replay re-reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.quality.policy import Enforced, to_json

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

COORDINATES = ("_kafka_topic", "_kafka_partition", "_kafka_offset", "_file", "_row")


def quarantine_frame(enforced: Enforced, source: str, run_id: str) -> pd.DataFrame:
    import pandas as pd

    rows = enforced.quarantined
    data = [c for c in rows.columns if c not in ("_rule", "_reason")]
    frame = pd.DataFrame(
        {
            "_source": source,
            "_rule": rows["_rule"].to_numpy(),
            "_reason": rows["_reason"].to_numpy(),
            "_raw": [to_json(r) for r in rows[data].to_dict(orient="records")],
            "_ingested_at": datetime.now(UTC),
            "_run_id": run_id,
        }
    )
    for column in COORDINATES:
        if column in rows.columns:
            frame[column] = rows[column].to_numpy()
    return frame


def quarantine_table(*frames: pd.DataFrame) -> pa.Table:
    import pandas as pd
    import pyarrow as pa

    schema = QUARANTINE.arrow_schema()
    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty_table()
    combined = pd.concat(frames, ignore_index=True)
    return pa.Table.from_pandas(
        combined.reindex(columns=schema.names), schema=schema, preserve_index=False
    )
