"""bronze.clickstream -> silver.page_views: type, validate, deduplicate, evolve.

Bronze keeps each event whole in ``payload``; silver takes its columns from there,
so a field the producers start sending becomes a silver column in the same run
(``evolution.plan`` types it from the values) without touching bronze or its
ingestion. Declared fields are text: a declared field that arrives as another JSON
type (``user_id`` as an object), or that no event of the newest batch carries any
more, is a breaking change and stops the source naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import IcebergType, NestedField

from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
from lakehouse.tables import evolution
from lakehouse.tables.evolution import SchemaBreak

TABLE = "silver.page_views"
# silver columns read from the event by name, leniently (a number lands as its text)
DETAIL_FIELDS = ("session_id", "page", "product_id")
BASE_COLUMNS = frozenset(SILVER_PAGE_VIEWS.schema.column_names)
# what a build reads of each bronze event
BRONZE_FIELDS = (
    "event_id",
    "event_type",
    "user_id",
    "event_ts",
    "payload",
    "_kafka_topic",
    "_kafka_partition",
    "_kafka_offset",
)


@dataclass
class PageViewsResult:
    silver: pa.Table
    rejects: pd.DataFrame  # columns: _rule, _reason, _raw, _kafka_partition, _kafka_offset
    bronze_page_view_rows: int
    duplicates_removed: int
    # columns new in this run (to add to the table before writing), by Iceberg type
    additions: dict[str, IcebergType] = field(default_factory=dict)
    # every column beyond the base layout that ``silver`` carries (earlier and new)
    evolved: list[str] = field(default_factory=list)


def build_page_views(
    bronze: pa.Table, declared: Iterable[str] = (), current: Schema | None = None
) -> PageViewsResult:
    """Page views typed and deduplicated on ``event_id`` (first by Kafka position wins).

    A producer that retries re-sends the same event; the copy with the lowest
    (partition, offset) is the one the business saw first, so it is kept.
    ``declared`` are the event fields sources.yml names (text); ``current`` is the
    silver table's schema, whose evolved columns keep their type.
    """
    df = bronze.select(list(BRONZE_FIELDS)).to_pandas()
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
    positions = [
        f"kafka {p}/{o}"
        for p, o in zip(deduped["_kafka_partition"], deduped["_kafka_offset"], strict=True)
    ]
    declared = tuple(declared)
    _check_declared_text(details, positions, declared)
    ignored = BASE_COLUMNS | set(DETAIL_FIELDS) | set(declared)
    additions = evolution.plan(
        TABLE,
        {},
        current,
        (
            (at, {k: v for k, v in d.items() if k not in ignored})
            for at, d in zip(positions, details, strict=True)
        ),
    )
    earlier = [f for f in (current.fields if current else ()) if f.name not in BASE_COLUMNS]
    new_fields = [
        NestedField(1000 + i, name, ftype, required=False)
        for i, (name, ftype) in enumerate(additions.items())
    ]
    extra = [*earlier, *new_fields]
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
    order = out.sort_values(["event_ts", "event_id"]).index.to_numpy()
    out = out.loc[order].reset_index(drop=True)
    schema = Schema(*SILVER_PAGE_VIEWS.schema.fields, *extra).as_arrow()
    silver = pa.Table.from_pandas(
        out, schema=SILVER_PAGE_VIEWS.arrow_schema(), preserve_index=False
    )
    for f in extra:  # older events without the field read null
        target = schema.field(f.name)
        values = [evolution.to_storable(details[i].get(f.name)) for i in order]
        silver = silver.append_column(target, pa.array(values, target.type))
    return PageViewsResult(
        silver=silver,
        rejects=rejects.reset_index(drop=True),
        bronze_page_view_rows=total,
        duplicates_removed=len(good) - len(deduped),
        additions=additions,
        evolved=[f.name for f in extra],
    )


def _check_declared_text(details: list[dict], positions: list[str], declared: tuple[str, ...]):
    for at, event in zip(positions, details, strict=True):
        for name in declared:
            value = event.get(name)
            if value is not None and not isinstance(value, str):
                raise SchemaBreak(
                    f"{TABLE}: declared event field {name!r} is text but the event at {at} "
                    f"sent a JSON {_json_kind(value)} {json.dumps(value)[:60]!r} (type changed). "
                    "Nothing was written; fix the producer, or map the field differently in "
                    "sources.yml, then run again."
                )


def vanished_fields(events: Iterable[dict], declared: Iterable[str]) -> list[str]:
    """Declared fields that no event of a batch carries (none for an empty batch)."""
    seen: set[str] = set()
    any_event = False
    for event in events:
        any_event = True
        seen.update(event)
    return [] if not any_event else [f for f in declared if f not in seen]


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "array"}.get(type(value), type(value).__name__)


def _text(value) -> str | None:
    """A producer that sends a number or an object where text is expected still lands."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, dict | list) else str(value)
