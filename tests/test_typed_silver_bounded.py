"""Typed silver in bounded memory (issue 18): a full rebuild spills its reduced chunks to
buckets by key and writes a bucket at a time; an increment rewrites only the stored files
holding its keys. Checked on real Iceberg tables, read back: the rows are exactly the old
reduction's (one latest row per key over all of bronze, in arrival order), and the
memory a rebuild takes follows a bucket, not the table.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.declarations.pii import PiiPolicy
from lakehouse.declarations.sources import LandingSource
from lakehouse.defs.silver.builds import silver_shape
from lakehouse.silver.typed import TypedBuild
from lakehouse.tables.commits import append_with_position, ensure_table
from lakehouse.tables.increments import FULL, INCREMENTAL, Plan, read_increment
from lakehouse.transforms.key_buckets import KeyBuckets, key_bucket
from lakehouse.transforms.typed import latest_per_key, order_columns, typed_columns
from resources.iceberg import IcebergCatalogResource

COLUMNS = {"k": "string", "n": "int", "amount": "decimal(10,2)", "day": "date", "note": "string"}
START = datetime(2026, 11, 1, tzinfo=UTC)


def _source(pii: bool = False) -> LandingSource:
    return LandingSource(
        name="bounded_items",
        format="csv",
        columns=COLUMNS,
        keys=("k", "n"),
        pii={"note": PiiPolicy.HASH} if pii else {},
    )


def _land(catalog, source: LandingSource, rows: list[dict], batch: int) -> None:
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    table = pa.Table.from_pylist(rows, schema=source.layout.arrow_schema())
    append_with_position(bronze, table, "test", {"batch": batch}, f"bronze-{batch}")


def _random_batch(rng: random.Random, source: LandingSource, batch: int, size: int) -> list[dict]:
    """Rows with keys drawn from a small space (duplicates within and across batches), null
    key parts, blank values, and arrival ties: a file and row sent again in the same batch."""
    rows = []
    for row in range(size):
        key = rng.choice([None, "", *(f"k{i}" for i in range(40))])
        rows.append(
            {
                "k": key,
                "n": rng.choice([None, *map(str, range(8))]),
                "amount": rng.choice(["", f"{rng.randint(0, 99_999) / 100:.2f}"]),
                "day": (START.date() + timedelta(days=rng.randint(0, 9))).isoformat(),
                "note": rng.choice([None, f"note {rng.randint(0, 9_999)}"]),
                "_source": source.name,
                "_file": f"s3://landing/bounded/{batch}-{row % 3}.csv",
                # ties: the same file and row more than once, told apart by arrival only
                "_row": rng.randint(0, size // 4),
                "_ingested_at": START + timedelta(minutes=batch // 2),
                "_run_id": f"bronze-{batch}",
            }
        )
    return rows


def _old_reduction(catalog, source: LandingSource, build: TypedBuild) -> list:
    """The reduction the build made before buckets: the latest row per key over all of
    bronze in one table, in the order the build reads it."""
    bronze = catalog.load_table(source.bronze_table)
    plan = Plan(FULL, "reference", bronze.current_snapshot())
    rows = read_increment(bronze, plan, (*COLUMNS, *build.order_by))
    order = order_columns(build.order_by)
    typed = typed_columns(rows, COLUMNS, carry=build.order_by, zone=build.zone)
    return _sorted(latest_per_key(typed, source.keys, order).drop_columns(order).to_pylist())


def _sorted(rows: list[dict]) -> list:
    return sorted(sorted((k, repr(v)) for k, v in r.items()) for r in rows)


def _silver(catalog, source: LandingSource) -> list:
    return _sorted(catalog.load_table(f"silver.{source.name}").scan().to_arrow().to_pylist())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_bucketed_rebuild_and_increments_equal_the_old_reduction(lakehouse_env, seed):
    catalog = IcebergCatalogResource().load()
    source = _source()
    rng = random.Random(seed)
    for batch in range(4):
        _land(catalog, source, _random_batch(rng, source, batch, rng.randint(50, 400)), batch)
    # a few rows per bucket: a key's rows arrive in several chunks and meet in one bucket
    build = TypedBuild(catalog, source, silver_shape(source, None), "r", rows_per_bucket=37)
    built = build.run()
    assert built.plan.mode == FULL
    expected = _old_reduction(catalog, source, build)
    assert _silver(catalog, source) == expected
    assert built.rows_written == len(expected)
    assert built.superseded == built.bronze_rows - len(expected)
    # increments on top (the many-keys path rewrites files): still the old reduction
    for batch in range(4, 7):
        _land(catalog, source, _random_batch(rng, source, batch, rng.randint(50, 400)), batch)
        assert build.run().plan.mode == INCREMENTAL
        assert _silver(catalog, source) == _old_reduction(catalog, source, build)
    # one bucket (everything at once) gives the same table
    whole = TypedBuild(catalog, source, build.shape, "r", rows_per_bucket=10**9)
    assert whole.run(full=True).plan.mode == FULL
    assert _silver(catalog, source) == _old_reduction(catalog, source, build)


def test_a_rebuild_with_pii_masks_every_bucket_and_commits_once(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    source = _source(pii=True)
    rng = random.Random(11)
    for batch in range(3):
        _land(catalog, source, _random_batch(rng, source, batch, 300), batch)
    one = TypedBuild(catalog, source, silver_shape(source, None), "one", rows_per_bucket=10**9)
    one.run()
    table = catalog.load_table(f"silver.{source.name}")
    in_one = _silver(catalog, source)
    snapshots = len(table.snapshots())
    many = TypedBuild(catalog, source, one.shape, "many", rows_per_bucket=20)
    built = many.run(full=True)
    assert built.plan.reason == "asked for (config full: true)"
    assert _silver(catalog, source) == in_one  # masked alike, bucket by bucket
    notes = [r["note"] for r in table.refresh().scan().to_arrow().to_pylist() if r["note"]]
    assert notes and not any(n.startswith("note ") for n in notes)
    # one overwrite: a delete and an append, both recording the build
    new = table.snapshots()[snapshots:]
    assert [s.summary.operation.value for s in new] == ["delete", "append"]
    for snapshot in new:
        assert snapshot.summary["lakehouse.run-id"] == "many"
        assert snapshot.summary["lakehouse.silver-mode"] == FULL
        assert snapshot.summary["lakehouse.bronze-snapshot-id"] == built.plan.until_id


def test_equal_keys_share_a_bucket_in_any_chunk():
    """A null in one chunk's integer column does not change how its other keys hash."""
    keys = ("k", "n")
    with_null = pa.table({"k": ["a", "b", None], "n": pa.array([1, None, 2], pa.int32())})
    without = pa.table({"k": ["a", None], "n": pa.array([1, 2], pa.int32())})
    a = key_bucket(with_null, keys, 64).to_pylist()
    b = key_bucket(without, keys, 64).to_pylist()
    assert (a[0], a[2]) == (b[0], b[1])
    with KeyBuckets(keys, 8) as buckets:
        for part in (with_null, without, with_null):
            buckets.add(part)
        back = list(buckets)
    assert sum(t.num_rows for t in back) == 8
    for table in back:  # each bucket keeps the order rows came in
        assert table.to_pylist() == sorted(
            table.to_pylist(),
            key=lambda r: [
                i for part in (with_null, without, with_null) for i in part.to_pylist()
            ].index(r),
        )


def test_many_keys_rewrite_only_the_files_that_hold_them(lakehouse_env):
    """Files holding none of an increment's keys keep their data files (the old path read
    the whole table and wrote it again)."""
    from lakehouse.tables.replace import FEW_KEYS, replace_keys

    catalog = IcebergCatalogResource().load()
    source = _source()
    ensure_table(catalog, f"silver.{source.name}", _layout(source))
    table = catalog.load_table(f"silver.{source.name}")
    schema = table.schema().as_arrow()
    for part in range(4):  # four data files, keys k0..k3 apart
        rows = [{"k": f"k{part}", "n": n, "note": "old"} for n in range(300)]
        table.append(pa.Table.from_pylist(rows, schema=schema))
    before = {f.file.file_path for f in table.scan().plan_files()}
    keys = {("k1", n) for n in range(0, 300, 2)} | {("k9", n) for n in range(100)}
    assert len(keys) > FEW_KEYS
    new = pa.Table.from_pylist([{"k": k, "n": n, "note": "new"} for k, n in keys], schema=schema)
    replace_keys(table, new, source.keys, keys, {"lakehouse.run-id": "r"})
    table = table.refresh()
    after = {f.file.file_path for f in table.scan().plan_files()}
    assert len(before - after) == 1  # k1's file only
    rows = table.scan().to_arrow().to_pylist()
    assert len(rows) == 4 * 300 + 100
    by_key = {(r["k"], r["n"]): r["note"] for r in rows}
    assert all(by_key[k] == "new" for k in keys)
    assert sum(v == "old" for v in by_key.values()) == 4 * 300 - 150
    assert table.current_snapshot().summary["lakehouse.run-id"] == "r"


def _layout(source: LandingSource):
    from lakehouse.declarations.layouts import typed_silver_layout

    return typed_silver_layout(source.columns)


def test_a_full_rebuild_holds_a_bucket_not_the_table(lakehouse_env):
    """Arrow's peak allocation in a fresh process building the table in full: with chunks
    and buckets of a fortieth and a twentieth of the table it stays under half the table's
    size (the old build held the whole reduced table, and copies of it: 6.5x here)."""
    catalog = IcebergCatalogResource().load()
    source = _source()
    rng = random.Random(5)
    for batch in range(40):
        rows = [
            {
                "k": f"k{batch}-{i}",
                "n": str(i % 7),
                "amount": f"{rng.randint(0, 99_999) / 100:.2f}",
                "day": "2026-11-02",
                "note": "x" * rng.randint(200, 400),
                "_source": source.name,
                "_file": f"f{batch}",
                "_row": i,
                "_ingested_at": START,
                "_run_id": f"bronze-{batch}",
            }
            for i in range(5_000)
        ]
        _land(catalog, source, rows, batch)
    done = subprocess.run(
        [sys.executable, "-c", _BUILD_IN_A_FRESH_PROCESS, "5000", "10000"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    table = catalog.load_table(f"silver.{source.name}").scan().to_arrow()
    assert figures["rows_written"] == table.num_rows == 200_000
    assert figures["arrow_peak"] < table.nbytes / 2, (figures, table.nbytes)


_BUILD_IN_A_FRESH_PROCESS = """
import json, sys
import pyarrow as pa
from tests.test_typed_silver_bounded import _source
from lakehouse.defs.silver.builds import silver_shape
from lakehouse.silver.typed import TypedBuild
from resources.iceberg import IcebergCatalogResource

source = _source()
catalog = IcebergCatalogResource().load()
kwargs = {"rows_per_chunk": int(sys.argv[1]), "rows_per_bucket": int(sys.argv[2])}
build = TypedBuild(catalog, source, silver_shape(source, None), "r", **kwargs)
built = build.run(full=True)
pool = pa.default_memory_pool()
print(json.dumps({"rows_written": built.rows_written, "arrow_peak": pool.max_memory()}))
"""
