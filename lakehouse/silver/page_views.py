"""silver.page_views from bronze.clickstream: in full, or only the days new events touch.

An incremental build reads the bronze appends since the last build, types and
deduplicates them, and rewrites only the ``event_date`` partitions they touch: each
touched day is read back, merged with the new events (the copy of an ``event_id``
with the lowest Kafka (partition, offset) wins, as in a full rebuild) and overwritten
with a filter on the partition's source column, so no other day's files are touched.
A re-sent event carries its original ``event_ts``, so its copies land on the same day.

Events the contract quarantined count as seen too: a later copy of one is a duplicate,
not a new row. Quarantine only grows by the new rejects; a copy that replaces an
earlier one (lower Kafka position) replaces it in quarantine as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import (
    AlwaysFalse,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThan,
    Or,
)
from pyiceberg.table import Table
from pyiceberg.types import StringType

from lakehouse.declarations.layouts import QUARANTINE, SILVER_PAGE_VIEWS
from lakehouse.declarations.pii import PiiPolicy
from lakehouse.declarations.sources import KafkaSource
from lakehouse.quality.policy import Contract, Enforced, contract_frame, enforce
from lakehouse.quality.quarantine import quarantine_frame, quarantine_table
from lakehouse.silver.build import ColumnChanges, SilverBuild
from lakehouse.silver.columns import evolve, pii_as_text, withhold
from lakehouse.tables.commits import (
    conform,
    ensure_table,
    transaction,
)
from lakehouse.tables.increments import Plan, plan_build, read_increment
from lakehouse.tables.rebuilds import superseded_by
from lakehouse.tables.replace import key_mask, keys_filter
from lakehouse.transforms.masking import mask_frame
from lakehouse.transforms.page_views import BRONZE_FIELDS, build_page_views

TABLE = "silver.page_views"
QUARANTINE_TABLE = "quarantine.page_views"
POSITION = ("_kafka_partition", "_kafka_offset")  # a bronze record's place in Kafka
TIMESTAMP_RULE = "event_ts_parseable"  # rejected before the contract: not a page view yet


@dataclass
class PageViewsBuilt:
    plan: Plan
    silver: Table
    quarantine: Table
    enforced: Enforced | None = None  # the contract's verdict on the rows it evaluated
    rejects: int = 0
    rows_written: int = 0
    bronze_rows_read: int = 0
    bronze_page_view_rows: int = 0
    duplicates_removed: int = 0
    rows_quarantined: int = 0
    days: list[str] = field(default_factory=list)
    columns: ColumnChanges = field(default_factory=ColumnChanges)
    superseded: int | None = None


@dataclass
class PageViewsBuild(SilverBuild):
    """One build of silver.page_views and quarantine.page_views."""

    source: KafkaSource
    contract: Contract = field(kw_only=True)

    def _run(self, full: bool) -> PageViewsBuilt:
        bronze = self.catalog.load_table(self.source.bronze_table)  # what the winner saw
        silver = ensure_table(self.catalog, TABLE, SILVER_PAGE_VIEWS)
        plan = plan_build(silver, bronze, self.shape, full=full)
        rows = read_increment(bronze, plan, BRONZE_FIELDS)
        result = build_page_views(
            rows, declared=self.source.columns.values(), current=silver.schema()
        )
        withheld = self.source.withheld(result.evolved)
        raw_policy = {**self.source.pii, **{c: PiiPolicy.REDACT for c in withheld}}
        # PII is masked before anything is stored, quarantine included
        rejects = result.rejects.assign(
            _source=self.source.name,
            _raw=[self.masker.mask_json_text(t, raw_policy) for t in result.rejects["_raw"]],
            _ingested_at=datetime.now(UTC),
            _run_id=self.run_id,
        )
        silver = evolve(
            silver,
            result.additions,
            {c: StringType() for c in result.evolved if c in self.source.pii},
        )
        candidates, withheld_values = withhold(result.silver, withheld)
        candidates = pii_as_text(candidates, self.source.pii)
        built = PageViewsBuilt(
            plan=plan,
            silver=silver,
            quarantine=ensure_table(self.catalog, QUARANTINE_TABLE, QUARANTINE),
            rejects=len(rejects),
            bronze_rows_read=rows.num_rows,
            bronze_page_view_rows=result.bronze_page_view_rows,
            duplicates_removed=result.duplicates_removed,
            columns=ColumnChanges(result.additions, result.evolved, withheld, withheld_values),
        )
        properties = plan.properties(self.run_id, self.shape)
        if plan.full:
            self._rebuild(built, bronze, candidates, rejects, properties)
        else:
            self._apply(built, candidates, rejects, properties)
        return built

    def _enforce(self, built: PageViewsBuilt, candidates: pa.Table, rejects) -> tuple:
        enforced = enforce(
            self.contract, mask_frame(contract_frame(candidates), self.source.pii, self.masker)
        )
        rows = pa.Table.from_pandas(
            enforced.passed, schema=built.silver.schema().as_arrow(), preserve_index=False
        )
        quarantined = quarantine_table(
            rejects, quarantine_frame(enforced, self.source.name, self.run_id)
        )
        built.enforced = enforced
        built.rows_quarantined = quarantined.num_rows
        return rows, quarantined

    def _rebuild(self, built, bronze: Table, candidates, rejects, properties) -> None:
        """Silver is a function of bronze: a full overwrite is idempotent."""
        rows, quarantined = self._enforce(built, candidates, rejects)
        newer = superseded_by(built.silver, bronze, built.plan.until)
        if newer is not None:  # a concurrent run already built from newer bronze
            built.superseded = newer
            return
        with transaction(built.silver) as tx:
            tx.overwrite(rows, snapshot_properties=properties)
        with transaction(built.quarantine) as tx:
            tx.overwrite(quarantined, snapshot_properties=properties)
        built.rows_written = rows.num_rows

    def _apply(self, built: PageViewsBuilt, candidates: pa.Table, rejects, properties) -> None:
        """Merge the new events into the days they touch; leave every other day's files."""
        if not built.plan.appends:  # nothing new in bronze: nothing to read or record
            self._enforce(built, candidates, rejects)
            return
        days = sorted(set(candidates["event_date"].to_pylist()))
        built.days = [d.isoformat() for d in days]
        in_days = days_filter(days)
        existing = conform(
            built.silver.scan(row_filter=in_days).to_arrow(), built.silver.schema().as_arrow()
        )
        stored, quarantined = self._quarantine_positions(built.quarantine, set(days))
        seen = {**quarantined, **_positions(existing, "silver")}
        keep, losers, duplicates = _first_copies(candidates, seen)
        built.duplicates_removed += duplicates
        rows, new_quarantine = self._enforce(built, candidates.filter(keep), rejects)
        # quarantine commits first and is idempotent (a retry after a lost silver commit
        # finds its rows there): a bronze record is quarantined at most once per rule
        new_quarantine = new_quarantine.filter(
            pc.invert(key_mask(new_quarantine, POSITION, stored))
        )
        built.rows_quarantined = new_quarantine.num_rows
        stored_days = existing.num_rows > 0  # their files are replaced, not appended to
        silver_losers = {pos for where, pos in losers if where == "silver"}
        if silver_losers:
            existing = existing.filter(pc.invert(key_mask(existing, POSITION, silver_losers)))
        merged = pa.concat_tables([existing, rows]).sort_by(
            [("event_ts", "ascending"), ("event_id", "ascending")]
        )
        quarantine_losers = [pos for where, pos in losers if where == "quarantine"]
        if new_quarantine.num_rows or quarantine_losers:
            with transaction(built.quarantine) as tx:
                if quarantine_losers:
                    tx.delete(
                        keys_filter(POSITION, quarantine_losers), snapshot_properties=properties
                    )
                tx.append(new_quarantine, snapshot_properties=properties)
        with transaction(built.silver) as tx:
            if stored_days:
                tx.overwrite(merged, overwrite_filter=in_days, snapshot_properties=properties)
            else:  # new days only (or nothing to merge: it records how far bronze was read)
                tx.append(merged, snapshot_properties=properties)
        built.rows_written = rows.num_rows

    def _quarantine_positions(self, quarantine: Table, days: set[date]) -> tuple[set, dict]:
        """Kafka positions already quarantined, and the contract-quarantined events of ``days``.

        Quarantine holds the rare bad rows, so reading its positions stays cheap.
        """
        rows = quarantine.scan(
            row_filter=EqualTo("_source", self.source.name),
            selected_fields=("_rule", "_raw", "_kafka_partition", "_kafka_offset"),
        ).to_arrow()
        stored, events = set(), {}
        wanted = {d.isoformat() for d in days}
        for rule, raw, partition, offset in zip(
            rows["_rule"].to_pylist(),
            rows["_raw"].to_pylist(),
            rows["_kafka_partition"].to_pylist(),
            rows["_kafka_offset"].to_pylist(),
            strict=True,
        ):
            stored.add((partition, offset))
            if rule == TIMESTAMP_RULE or not raw:
                continue
            row = json.loads(raw)
            if str(row.get("event_date"))[:10] in wanted:
                events[row.get("event_id")] = ("quarantine", (partition, offset))
        return stored, events


def days_filter(days: list[date]) -> BooleanExpression:
    """Rows whose ``event_ts`` falls on one of ``days`` (UTC): the partitions' own filter."""
    expression: BooleanExpression = AlwaysFalse()
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        one = And(
            GreaterThanOrEqual("event_ts", start.isoformat()),
            LessThan("event_ts", (start + timedelta(days=1)).isoformat()),
        )
        expression = one if isinstance(expression, AlwaysFalse) else Or(expression, one)
    return expression


def _positions(rows: pa.Table, where: str) -> dict[str, tuple]:
    return {
        event_id: (where, (partition, offset))
        for event_id, partition, offset in zip(
            rows["event_id"].to_pylist(),
            rows["_kafka_partition"].to_pylist(),
            rows["_kafka_offset"].to_pylist(),
            strict=True,
        )
    }


def _first_copies(candidates: pa.Table, seen: dict[str, tuple]) -> tuple[pa.Array, list, int]:
    """Which new events to keep, the earlier-stored copies they replace, and the duplicates."""
    keep, losers, duplicates = [], [], 0
    for event_id, partition, offset in zip(
        candidates["event_id"].to_pylist(),
        candidates["_kafka_partition"].to_pylist(),
        candidates["_kafka_offset"].to_pylist(),
        strict=True,
    ):
        earlier = seen.get(event_id)
        if earlier is None:
            keep.append(True)
            continue
        duplicates += 1
        if (partition, offset) < earlier[1]:
            keep.append(True)  # this copy came first in Kafka: it replaces the stored one
            losers.append(earlier)
        else:
            keep.append(False)
    return pa.array(keep, pa.bool_()), losers, duplicates
