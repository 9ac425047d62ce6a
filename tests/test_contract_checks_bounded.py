"""Contract checks in bounded memory (issue 18): a check evaluates the rows in scope a
bucket of keys at a time, and a typed table's check reads only the keys its new bronze
rows carry. On real Iceberg tables: the bucketed verdict is the one pandera gives the
whole frame (every rule's failing rows, for row rules, uniqueness and a key's history
timeline), and a check over a table many buckets large holds a bucket, not the table.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lakehouse.declarations.layouts import (
    SILVER_PAGE_VIEWS,
    cdc_silver_layouts,
    typed_silver_layout,
)
from lakehouse.declarations.sources import LandingSource, sources
from lakehouse.defs.silver.builds import silver_shape
from lakehouse.quality.contracts import PAGE_VIEWS, default_contract
from lakehouse.quality.history import history_contract
from lakehouse.quality.policy import Contract, evaluate
from lakehouse.quality.scope import Scope, changed_scope, full
from lakehouse.quality.table_checks import bucketable, check_table
from lakehouse.silver.typed import TypedBuild
from lakehouse.tables.commits import append_with_position, ensure_table
from lakehouse.tables.replace import FEW_KEYS
from resources.iceberg import IcebergCatalogResource

HASHED = "a" * 64
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _page_views(rng: random.Random, n: int) -> tuple[Contract, pa.Table, Scope]:
    """Views with event ids repeated within and across days, and every row rule broken
    now and then (a bad page, a masked user that is not, a date that is not the ts's)."""
    rows = []
    for i in range(n):
        ts = T0 + timedelta(minutes=rng.randint(0, 3 * 24 * 60))
        rows.append(
            {
                "event_id": f"e{rng.randint(0, n * 2 // 3)}",
                "user_id": rng.choice([HASHED] * 9 + ["not-masked"]),
                "session_id": rng.choice(["s1", "s2", None]),
                "page": rng.choice(["/", "/cart", "search", "/product/p-1"]),
                "product_id": rng.choice([None, "p-1"]),
                "event_ts": ts,
                "event_date": ts.date() + timedelta(days=rng.choice([0] * 19 + [1])),
                "_kafka_partition": 0,
                "_kafka_offset": i,
            }
        )
    table = pa.Table.from_pylist(rows, schema=SILVER_PAGE_VIEWS.arrow_schema())
    day_two = Scope("test: day two", "event_date", frozenset({date(2026, 11, 2)}))
    return PAGE_VIEWS, table, day_two


def _typed(rng: random.Random, n: int) -> tuple[Contract, pa.Table, Scope]:
    """A two-column key (unique together) with duplicates and null parts."""
    source = sources().landing_source("marketing_spend")
    contract = default_contract(source)
    rows = [
        {
            "spend_date": rng.choice([None, *(date(2026, 11, d) for d in range(1, 9))]),
            "channel": rng.choice(["search", "social", None]),
            "campaign": f"c{rng.randint(0, n // 20)}",
            "spend": None,
            "currency": "EUR",
        }
        for _ in range(n)
    ]
    schema = typed_silver_layout(source.columns).arrow_schema()
    scope = Scope("test: two days", "spend_date", frozenset({date(2026, 11, 3), None}))
    return contract, pa.Table.from_pylist(rows, schema=schema), scope


def _history(rng: random.Random, n: int) -> tuple[Contract, pa.Table, Scope]:
    """Timelines per key, some broken: two open versions, a gap, an open one closed."""
    source = next(s for s in sources().cdc if s.name == "customers")
    rows = []
    key = 0
    while len(rows) < n:
        key += 1
        start = 0
        versions = rng.randint(1, 6)
        for v in range(versions):
            end = start + rng.randint(1, 5)
            last = v == versions - 1
            broken = rng.random() < 0.03
            rows.append(
                {
                    "customer_id": f"c-{key}",
                    "email": HASHED,
                    "full_name": None,
                    "country": "DE",
                    "_lsn": key * 100 + v,
                    "_op": "u",
                    "valid_from": T0 + timedelta(hours=start),
                    "valid_to": None if last and not broken else T0 + timedelta(hours=end),
                    "is_current": last or broken,
                }
            )
            start = end + (1 if rng.random() < 0.03 else 0)
    schema = cdc_silver_layouts(source.columns)[1].arrow_schema()
    table = pa.Table.from_pylist(rows, schema=schema)
    keys = frozenset(f"c-{k}" for k in range(1, key, 2))
    assert len(keys) > FEW_KEYS  # files pruned by the keys' range, rows told in Arrow
    return history_contract(source), table, Scope("test: every other key", "customer_id", keys)


def _stored(catalog, name: str, rows: pa.Table, files: int):
    """``rows`` in an Iceberg table of ``files`` data files (rows of a key spread over them)."""
    table = catalog.create_table(name, schema=rows.schema)
    step = -(-rows.num_rows // files)
    for start in range(0, rows.num_rows, step):
        table.append(rows.slice(start, step))
    return table.refresh()


def _text(values) -> tuple:
    """Key values as text, a missing one (None, or pandas' NaN) as None."""
    return tuple(None if v is None or v != v else str(v) for v in values)


def _reference(contract: Contract, table, scope: Scope) -> dict[str, tuple[int, set]]:
    """Per rule, the rows pandera finds failing in one frame of the rows in scope (plus,
    for a uniqueness rule, rows whose key a row outside holds): their count, and their
    keys as text."""
    df = table.scan(row_filter=scope.row_filter).to_pandas()
    labels = {rule: set(o.index) for rule, o in evaluate(contract, df).outcomes.items()}
    if not scope.full:
        every = table.scan().to_arrow()
        outside = every.filter(pc.invert(scope.mask(every))).to_pandas()
        rules = {f"{n}:field_uniqueness": (n,) for n, c in contract.columns.items() if c.unique}
        if contract.unique:
            rules["multiple_fields_uniqueness"] = tuple(contract.unique)
        for rule, columns in rules.items():
            held = set(outside[list(columns)].itertuples(index=False, name=None))
            clash = [tuple(r) in held for r in df[list(columns)].itertuples(index=False)]
            labels[rule] |= set(df.index[clash])
    keys = list(contract.key_columns)
    return {
        rule: (len(found), {_text(df.loc[i, keys]) for i in found})
        for rule, found in labels.items()
    }


@pytest.mark.parametrize("shape", [_page_views, _typed, _history])
@pytest.mark.parametrize("scoped", [False, True])
def test_a_bucketed_check_gives_the_whole_frames_verdict(lakehouse_env, shape, scoped):
    catalog = IcebergCatalogResource().load()
    contract, rows, scope = shape(random.Random(7), 1_500)
    if not scoped:
        scope = full("test: everything")
    table = _stored(catalog, f"silver.bounded_{shape.__name__.strip('_')}", rows, files=4)
    assert bucketable(contract)
    reference = _reference(contract, table, scope)
    in_scope = table.scan(row_filter=scope.row_filter).count()
    broken = {r for r, (count, _) in reference.items() if count}
    assert len(broken) >= 2, reference  # the shapes break several rules, or nothing is shown
    for rows_per_bucket in (53, 10**9):  # about 30 buckets, then one frame
        evaluation = check_table(table, contract, scope, rows_per_bucket=rows_per_bucket)
        assert evaluation.rows == in_scope
        for rule, (count, keys) in reference.items():
            outcome = evaluation.outcomes[rule]
            assert outcome.failing_rows == count, (rule, rows_per_bucket)
            assert len(outcome.examples) == min(10, count)
            for example in outcome.examples:  # each example is a failing row
                assert _text(example[k] for k in contract.key_columns) in keys, (rule, example)


def _land(catalog, source: LandingSource, rows: list[dict], batch: int) -> None:
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    lineage = {
        "_source": source.name,
        "_file": f"s3://landing/{source.name}/{batch}.csv",
        "_ingested_at": T0 + timedelta(minutes=batch),
        "_run_id": f"bronze-{batch}",
    }
    rows = [{**r, **lineage, "_row": n + 2} for n, r in enumerate(rows)]
    table = pa.Table.from_pylist(rows, schema=source.layout.arrow_schema())
    append_with_position(bronze, table, "test", {"batch": batch}, f"bronze-{batch}")


def _spend(day: str, channel: str, campaign: str, spend: str = "1.00") -> dict:
    return {
        "spend_date": day,
        "channel": channel,
        "campaign": campaign,
        "spend": spend,
        "currency": "EUR",
    }


def test_a_typed_tables_check_reads_the_keys_its_new_bronze_rows_carry(lakehouse_env):
    """The scope is the first key column's new values, typed (a date here), and a new row
    without a key is in it too: its not-null rule fails on the increment alone."""
    catalog = IcebergCatalogResource().load()
    source = sources().landing_source("marketing_spend")
    contract = default_contract(source)
    build = TypedBuild(catalog, source, silver_shape(source, None), "silver-0")
    days = [f"2026-11-0{d}" for d in range(1, 7)]
    _land(catalog, source, [_spend(d, c, "c1") for d in days for c in ("search", "email")], 0)
    build.run()
    table = catalog.load_table("silver.marketing_spend")
    since = table.current_snapshot().snapshot_id
    first = changed_scope(catalog, table, "silver.marketing_spend", None)
    assert first.full and check_table(table, contract, first).rows == 12

    # a new day, a key sent again with a new spend, and a row without its date
    again = [_spend("2026-11-09", "search", "c1"), _spend("2026-11-03", "email", "c1", "2.50")]
    _land(catalog, source, [*again, _spend("", "social", "c2")], 1)
    build.run_id = "silver-1"
    assert build.run().plan.mode == "incremental"
    table = table.refresh()
    scope = changed_scope(catalog, table, "silver.marketing_spend", since)
    assert not scope.full, scope.reason
    assert scope.column == "spend_date"
    assert scope.values == {date(2026, 11, 9), date(2026, 11, 3), None}
    assert "3 new bronze rows" in scope.reason
    evaluation = check_table(table, contract, scope)
    assert evaluation.rows == 2 + 1 + 1  # 11-03 (two channels), 11-09, the row without a date
    assert evaluation.outcomes["spend_date:not_nullable"].failing_rows == 1
    failing = {r for r, o in evaluation.outcomes.items() if not o.passed}
    assert failing == {"spend_date:not_nullable"}
    # nothing landed since: an empty scope, nothing read
    now = table.current_snapshot().snapshot_id
    assert changed_scope(catalog, table, "silver.marketing_spend", now).values == frozenset()


def test_a_typed_tables_scope_is_full_when_its_key_is_masked(lakehouse_env):
    from lakehouse.declarations.pii import PiiPolicy
    from lakehouse.quality.scope import typed_scope

    source = sources().landing_source("marketing_spend")
    masked = source.model_copy(update={"pii": {"spend_date": PiiPolicy.HASH}})
    catalog = IcebergCatalogResource().load()
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    scope = typed_scope(masked, bronze, {"bronze-0"}, "test")
    assert scope.full and "masked" in scope.reason


def test_a_check_over_many_buckets_holds_a_bucket_not_the_table(lakehouse_env):
    """Arrow's peak allocation plus Python's (tracemalloc), in a fresh process, evaluating
    a full scope of a table twenty buckets large: under half of what one frame takes.
    (Peak RSS is no measure at this size: pyiceberg's reader threads leave ~100 MB of
    malloc arenas behind whatever is read.)"""
    catalog = IcebergCatalogResource().load()
    rng = random.Random(3)
    wide = _wide_rows(rng, 120_000)
    table = _stored(catalog, "silver.bounded_wide", wide, files=8)
    figures = {}
    for label, rows_per_bucket in (("one frame", 10**9), ("buckets", 6_000)):
        done = subprocess.run(
            [sys.executable, "-c", _CHECK_IN_A_FRESH_PROCESS, str(rows_per_bucket)],
            capture_output=True,
            text=True,
            env=os.environ.copy(),
            cwd=Path(__file__).parent.parent,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        figures[label] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["one frame"]["rows"] == figures["buckets"]["rows"] == table.scan().count()
    assert figures["one frame"]["failing"] == figures["buckets"]["failing"]
    assert figures["buckets"]["held_mib"] < figures["one frame"]["held_mib"] / 2, figures


def _wide_rows(rng: random.Random, n: int) -> pa.Table:
    source = _wide_source()
    schema = typed_silver_layout(source.columns).arrow_schema()
    return pa.table(
        {
            "k": pa.array([f"k{i:08d}" for i in range(n)]),
            "n": pa.array([i % 7 for i in range(n)], pa.int32()),
            "note": pa.array(["x" * rng.randint(200, 400) for _ in range(n)]),
        },
        schema=schema,
    )


def _wide_source() -> LandingSource:
    return LandingSource(
        name="bounded_wide",
        format="csv",
        columns={"k": "string", "n": "int", "note": "string"},
        keys=("k", "n"),
    )


_CHECK_IN_A_FRESH_PROCESS = """
import json, sys, tracemalloc
import pyarrow as pa
import pyarrow.compute as pc
from lakehouse.quality.contracts import default_contract
from lakehouse.quality.scope import full
from lakehouse.quality.table_checks import check_table
from resources.iceberg import IcebergCatalogResource
from tests.test_contract_checks_bounded import _wide_source

table = IcebergCatalogResource().load().load_table("silver.bounded_wide")
contract = default_contract(_wide_source())
tracemalloc.start()
evaluation = check_table(table, contract, full("test"), rows_per_bucket=int(sys.argv[1]))
held = pa.default_memory_pool().max_memory() + tracemalloc.get_traced_memory()[1]
failing = {r: o.failing_rows for r, o in evaluation.outcomes.items()}
print(json.dumps({"rows": evaluation.rows, "failing": failing, "held_mib": held / 2**20}))
"""
