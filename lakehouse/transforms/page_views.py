"""bronze.clickstream -> silver.page_views: type, validate, deduplicate."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from lakehouse.tables.schemas import SILVER_PAGE_VIEWS


@dataclass
class PageViewsResult:
    silver: pa.Table
    rejects: pd.DataFrame  # columns: _rule, _reason, _raw, _kafka_partition, _kafka_offset
    bronze_page_view_rows: int
    duplicates_removed: int


def build_page_views(bronze: pa.Table) -> PageViewsResult:
    """Page views typed and deduplicated on ``event_id`` (first by Kafka position wins).

    A producer that retries re-sends the same event; the copy with the lowest
    (partition, offset) is the one the business saw first, so it is kept.
    """
    df = bronze.select(
        [
            "event_id",
            "event_type",
            "user_id",
            "event_ts",
            "payload",
            "_kafka_topic",
            "_kafka_partition",
            "_kafka_offset",
        ]
    ).to_pandas()
    df = df[df["event_type"] == "page_view"]
    total = len(df)
    parsed_ts = pd.to_datetime(df["event_ts"], utc=True, errors="coerce", format="ISO8601")
    bad_ts = parsed_ts.isna()
    rejects = pd.DataFrame(
        {
            "_rule": "event_ts_parseable",
            "_reason": "event ts is not an ISO-8601 timestamp: "
            + df.loc[bad_ts, "event_ts"].astype(str),
            "_raw": df.loc[bad_ts, "payload"],
            "_kafka_topic": df.loc[bad_ts, "_kafka_topic"],
            "_kafka_partition": df.loc[bad_ts, "_kafka_partition"],
            "_kafka_offset": df.loc[bad_ts, "_kafka_offset"],
        }
    )
    good = df[~bad_ts].assign(event_ts=parsed_ts[~bad_ts])
    good = good.sort_values(["_kafka_partition", "_kafka_offset"])
    deduped = good.drop_duplicates(subset=["event_id"], keep="first")
    details = [json.loads(p) for p in deduped["payload"]]
    out = pd.DataFrame(
        {
            "event_id": deduped["event_id"].to_numpy(),
            "user_id": deduped["user_id"].to_numpy(),
            "session_id": [_text(d.get("session_id")) for d in details],
            "page": [_text(d.get("page")) for d in details],
            "product_id": [_text(d.get("product_id")) for d in details],
            "event_ts": deduped["event_ts"].dt.as_unit("us").to_numpy(),
            "_kafka_partition": deduped["_kafka_partition"].to_numpy(),
            "_kafka_offset": deduped["_kafka_offset"].to_numpy(),
        }
    )
    out["event_ts"] = pd.to_datetime(out["event_ts"], utc=True)
    out["event_date"] = out["event_ts"].dt.date
    out = out.sort_values(["event_ts", "event_id"]).reset_index(drop=True)
    silver = pa.Table.from_pandas(
        out, schema=SILVER_PAGE_VIEWS.arrow_schema(), preserve_index=False
    )
    return PageViewsResult(
        silver=silver,
        rejects=rejects.reset_index(drop=True),
        bronze_page_view_rows=total,
        duplicates_removed=len(good) - len(deduped),
    )


def _text(value) -> str | None:
    """A producer that sends a number or an object where text is expected still lands."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
