"""Spark on the shared Iceberg catalog: a real local Spark session, real tables.

One JVM serves the module (each test's run gets its own ``newSession()`` on its own
catalog); results are read back with pyiceberg and compared with computations
written here independently of the Spark code.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
from lakehouse.declarations.sources import sources
from lakehouse.demo.cdc import CdcMessage, envelope, generate_changes
from lakehouse.ingest.kafka.decode import bronze_row
from lakehouse.settings import LakehouseSettings
from lakehouse.spark.jars import SparkJarsMissing, build_spark_jars, spark_jars
from lakehouse.tables.commits import ensure_table
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource, prepare_driver_environment, session_conf

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def spark_jars_dir(tmp_path_factory) -> Path:
    jars = tmp_path_factory.mktemp("spark-jars")
    settings = LakehouseSettings(state_dir=jars.parent / "unused", spark_jars_dir=jars)
    build_spark_jars(settings)
    return jars


@pytest.fixture(scope="module")
def spark_jvm(spark_jars_dir, tmp_path_factory):
    """The module's JVM; runs get isolated sessions on it and leave it running."""
    from pyspark.sql import SparkSession

    state = tmp_path_factory.mktemp("spark-root")
    settings = LakehouseSettings(state_dir=state, spark_jars_dir=spark_jars_dir)
    conf = session_conf(settings)
    prepare_driver_environment(conf)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()


@pytest.fixture
def spark_env(lakehouse_env, spark_jars_dir, spark_jvm, monkeypatch) -> LakehouseSettings:
    monkeypatch.setenv("LAKEHOUSE_SPARK_JARS_DIR", str(spark_jars_dir))
    return lakehouse_env


def _materialize(assets, partition_range: tuple[str, str]) -> dg.ExecuteInProcessResult:
    start, end = partition_range
    return dg.materialize(
        assets,
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        tags={
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        },
    )


# ---------------------------------------------------------------- jar cache


def test_jar_cache_is_idempotent_and_says_what_is_missing(spark_jars_dir, tmp_path, monkeypatch):
    settings = LakehouseSettings(state_dir=tmp_path, spark_jars_dir=spark_jars_dir)
    jars, built = build_spark_jars(settings)
    assert not built
    assert {p.name for p in jars.jars} == {
        "iceberg-spark-runtime-3.5_2.12-1.10.2.jar",
        "iceberg-shaded-jackson-2.15.2.jar",
    }
    empty = LakehouseSettings(state_dir=tmp_path / "fresh")
    with pytest.raises(SparkJarsMissing, match="lakehouse prepare") as missing:
        spark_jars(empty)
    assert "iceberg-spark-runtime" in str(missing.value)
    # a run without the cache fails before starting Spark, with the same message
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "fresh"))
    monkeypatch.delenv("LAKEHOUSE_SPARK_JARS_DIR", raising=False)
    with pytest.raises(SparkJarsMissing, match="lakehouse prepare"):
        SparkResource().session()


def test_an_image_with_the_complete_iceberg_runtime_needs_no_cache(tmp_path, monkeypatch):
    from lakehouse.spark import jars as module

    pyspark_jars = tmp_path / "pyspark-jars"
    pyspark_jars.mkdir()
    (pyspark_jars / "iceberg-spark-runtime-3.5_2.12-1.10.0.jar").write_bytes(b"PK")
    monkeypatch.setattr(module, "_pyspark_jars_dir", lambda: pyspark_jars)
    settings = LakehouseSettings(state_dir=tmp_path / "state")
    assert build_spark_jars(settings) == (spark_jars(settings), False)
    conf = session_conf(settings)
    assert "spark.jars" not in conf and "spark.driver.extraClassPath" not in conf
    assert conf["spark.sql.catalog.lakehouse"] == "org.apache.iceberg.spark.SparkCatalog"
    assert not (tmp_path / "state").exists()


# ---------------------------------------------------------------- sessions


def _page_views(rng: random.Random) -> list[dict]:
    """Three days of page views with the edge cases sessionization must get right."""
    rows = []
    n = 0

    def view(user, ts, page="/", product=None):
        nonlocal n
        n += 1
        rows.append(
            {
                "event_id": f"e-{n:06d}",
                "user_id": user,
                "session_id": None,
                "page": page,
                "product_id": product,
                "event_ts": ts,
                "event_date": ts.date(),
                "_kafka_partition": 0,
                "_kafka_offset": n,
            }
        )

    for _ in range(3000):
        ts = DAY0 + timedelta(
            seconds=rng.randint(0, 3 * 86_400 - 1), milliseconds=rng.randint(0, 999)
        )
        product = f"p-{rng.randint(0, 30)}" if rng.random() < 0.5 else None
        page = f"/product/{product}" if product else rng.choice(["/", "/cart", "/search", None])
        view(f"u-{rng.randint(0, 60):03d}", ts, page, product)
    edge = DAY0 + timedelta(hours=5)
    view("edge-gap", edge, "/a")
    view("edge-gap", edge + timedelta(minutes=30), "/b")  # exactly 30 min: same session
    view("edge-gap", edge + timedelta(minutes=60, microseconds=1), "/c")  # > 30 min: new
    view("edge-tie", edge, "/z")
    view("edge-tie", edge, "/y")  # same instant: event_id orders
    night = DAY0 + timedelta(days=1) - timedelta(minutes=5)
    view("edge-midnight", night, "/late")
    view("edge-midnight", night + timedelta(minutes=10), "/early")  # next day: new session
    view(None, edge, "/anonymous")  # no user: no session
    return rows


def _expected_sessions(rows: list[dict], first: date, last: date) -> dict[str, dict]:
    by_user: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["user_id"] is not None and first <= r["event_ts"].date() <= last:
            by_user.setdefault((r["user_id"], r["event_ts"].date()), []).append(r)
    sessions: dict[str, dict] = {}
    for (user, day), views in by_user.items():
        views.sort(key=lambda r: (r["event_ts"], r["event_id"]))
        groups: list[list[dict]] = []
        for v in views:
            if groups and v["event_ts"] - groups[-1][-1]["event_ts"] <= timedelta(minutes=30):
                groups[-1].append(v)
            else:
                groups.append([v])
        for g in groups:
            start, end = g[0]["event_ts"], g[-1]["event_ts"]
            micros = (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            sessions[f"{user}:{micros}"] = {
                "user_id": user,
                "session_date": day,
                "session_start": start,
                "session_end": end,
                "duration_seconds": (end - start).total_seconds(),
                "page_views": len(g),
                "distinct_pages": len({v["page"] for v in g if v["page"] is not None}),
                "product_views": sum(v["product_id"] is not None for v in g),
                "landing_page": g[0]["page"],
                "exit_page": g[-1]["page"],
            }
    return sessions


def _read_sessions(catalog) -> dict[str, dict]:
    rows = catalog.load_table("silver.sessions").scan().to_arrow().to_pylist()
    return {r.pop("session_id"): r for r in rows}


def test_sessions_backfill_is_one_spark_run_and_matches_an_independent_computation(spark_env):
    from lakehouse.defs.silver.spark import silver_sessions

    catalog = IcebergCatalogResource().load()
    rows = _page_views(random.Random(5))
    table = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    table.append(pa.Table.from_pylist(rows, schema=SILVER_PAGE_VIEWS.arrow_schema()))

    result = _materialize([silver_sessions], ("2026-11-01", "2026-11-02"))
    assert result.success
    events = result.get_asset_materialization_events()  # two days, one run
    assert sorted(e.partition for e in events) == ["2026-11-01", "2026-11-02"]
    got = _read_sessions(catalog)
    expected = _expected_sessions(rows, date(2026, 11, 1), date(2026, 11, 2))
    assert got == expected
    assert {r["session_date"] for r in got.values()} == {date(2026, 11, 1), date(2026, 11, 2)}
    edge = sorted(
        (s for s in got.values() if s["user_id"] == "edge-gap"), key=lambda s: s["session_start"]
    )
    assert [s["page_views"] for s in edge] == [2, 1]
    assert [s["landing_page"] for s in got.values() if s["user_id"] == "edge-tie"] == ["/z"]
    assert len([s for s in got.values() if s["user_id"] == "edge-midnight"]) == 2

    metadata = result.asset_materializations_for_node("silver__sessions")[0].metadata
    assert metadata["rows_out"].value == len(expected)
    assert metadata["spark_jobs"].value >= 1
    assert metadata["partitions"].value == 2

    # a day recomputed alone replaces exactly that day: rerun is idempotent
    snapshot = catalog.load_table("silver.sessions").current_snapshot().snapshot_id
    assert _materialize([silver_sessions], ("2026-11-02", "2026-11-02")).success
    assert _read_sessions(catalog) == expected
    assert catalog.load_table("silver.sessions").current_snapshot().snapshot_id != snapshot
    # a later day adds its sessions and leaves the others as they were
    assert _materialize([silver_sessions], ("2026-11-03", "2026-11-03")).success
    assert _read_sessions(catalog) == _expected_sessions(rows, date(2026, 11, 1), date(2026, 11, 3))


def test_sessions_pandas_path_equals_the_spec(spark_env):
    from lakehouse.spark.sessions import sessionize_pandas

    rows = _page_views(random.Random(9))
    out = sessionize_pandas(pa.Table.from_pylist(rows, schema=SILVER_PAGE_VIEWS.arrow_schema()))
    got = {r.pop("session_id"): r for r in out.to_pylist()}
    assert got == _expected_sessions(rows, date(2026, 11, 1), date(2026, 11, 3))


# ---------------------------------------------------------------- CDC merge


def _customers():
    return sources().cdc_source("customers")


def _customers_increments(seed: int) -> list[list[CdcMessage]]:
    """The customers changelog with redeliveries and a truncate, in random increments."""
    messages, _ = generate_changes(snapshot=40, steps=260, seed=seed)
    rng = random.Random(seed)
    third = len(messages) // 3
    head, rest = messages[:third], messages[third:]
    after = json.loads(next(m.value for m in rest if m.value is not None))
    after = after.get("payload") or after
    truncate = envelope("t", None, None, after["source"]["lsn"] - 1, after["ts_ms"], 1, False)
    delivered = [*head, CdcMessage(b"", json.dumps(truncate).encode()), *rest]
    for message in list(delivered):
        if message.value is not None and rng.random() < 0.05:  # redelivered later
            first = delivered.index(message)
            delivered.insert(rng.randint(first + 1, len(delivered)), message)
    cuts = sorted(rng.sample(range(1, len(delivered)), 5))
    return [delivered[i:j] for i, j in zip([0, *cuts], [*cuts, len(delivered)], strict=True)]


def _land_changes(catalog, source, batch: list[CdcMessage], n: int, offset: int) -> int:
    bronze = ensure_table(catalog, source.bronze_table, source.layout)
    at = DAY0 + timedelta(hours=n)
    rows = []
    for message in batch:
        rows.append(
            {
                **bronze_row(source, message),
                "_source": source.name,
                "_kafka_topic": source.topic,
                "_kafka_partition": 0,
                "_kafka_offset": offset,
                "_kafka_timestamp": at,
                "_ingested_at": at,
                "_run_id": f"bronze-{n}",
            }
        )
        offset += 1
    bronze.append(pa.Table.from_pylist(rows, schema=bronze.schema().as_arrow()))
    return offset


CDC_TABLES = ("silver.customers", "silver.customers_history", "quarantine.customers")


def _tables(catalog, names: tuple[str, ...] = CDC_TABLES) -> dict[str, list]:
    """Each table's rows, order-free; quarantine without the run's own columns."""
    run_columns = {"_ingested_at", "_run_id"}
    out = {}
    for name in names:
        rows = catalog.load_table(name).scan().to_arrow().to_pylist()
        out[name] = sorted(
            sorted((k, repr(v)) for k, v in r.items() if k not in run_columns) for r in rows
        )
    return out


def _build(engine: str, full: bool = False, source=None) -> dg.ExecuteInProcessResult:
    from lakehouse.defs.silver.cdc import cdc_silver_asset

    source = source or _customers()
    config = {"engine": engine, "full": full}
    result = dg.materialize(
        [cdc_silver_asset(source)],
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        run_config={"ops": {f"silver_{source.name}": {"config": config}}},
    )
    assert result.success
    return result


def _built(result: dg.ExecuteInProcessResult, name: str = "customers") -> dict:
    events = result.asset_materializations_for_node(f"silver_{name}")
    metadata = next(e.metadata for e in events if e.asset_key.path == ["silver", name])
    return {k: v.value for k, v in metadata.items()}


def test_the_spark_engine_writes_the_arrow_engines_rows(spark_env):
    """The same bronze increments, built by each engine into fresh tables: identical
    current state, history and quarantine, increment by increment and in the end, and
    equal to Spark's full rebuild; the truncate makes both rebuild, and both say why."""
    catalog = IcebergCatalogResource().load()
    source = _customers()
    increments = _customers_increments(seed=21)
    seen: dict[str, list] = {}
    for engine in ("arrow", "spark"):
        for name in (*CDC_TABLES, source.bronze_table):
            catalog.drop_table(name) if catalog.table_exists(name) else None
        offset, states, modes = 0, [], []
        for n, batch in enumerate(increments):
            offset = _land_changes(catalog, source, batch, n, offset)
            built = _built(_build(engine))
            assert built["lakehouse/engine"] == engine
            why = re.sub(r"\d{12,}", "<snapshot>", built["lakehouse/silver_mode_reason"])
            modes.append((built["lakehouse/silver_mode"], why))
            states.append(_tables(catalog))
        seen[engine] = [states, modes]
    (arrow_states, arrow_modes), (spark_states, spark_modes) = seen["arrow"], seen["spark"]
    assert spark_modes == arrow_modes
    assert [m for m, _ in arrow_modes].count("incremental") >= 3
    assert any("truncate" in why for _, why in arrow_modes)
    for n, (arrow, spark) in enumerate(zip(arrow_states, spark_states, strict=True)):
        for name in CDC_TABLES:
            assert spark[name] == arrow[name], f"{name} after increment {n}"
    final = spark_states[-1]
    assert len(final["silver.customers"]) > 20 and len(final["silver.customers_history"]) > 100
    assert any("'notes'" in str(r) for r in final["silver.customers"])

    rebuilt = _built(_build("spark", full=True))
    assert rebuilt["lakehouse/silver_mode"] == "full"
    assert _tables(catalog) == final


def test_the_engines_agree_on_transactions(spark_env, make_database):
    """Every transaction shape of tests/cdc_transactions.py (one commit time for several
    changes, a snapshot at one LSN, key changes, REPLICA IDENTITY DEFAULT), split inside
    a transaction: both engines write the same rows, increment by increment."""
    import psycopg

    from tests.cdc_transactions import Connector, run_transactions

    start = datetime(2026, 11, 1, 10)
    with psycopg.connect(make_database("spark_tx")) as conn:
        connector = Connector(conn, "default", True, start)
        run_transactions(connector, start)
    messages = connector.messages
    split = next(i for i, m in enumerate(messages) if m.value and b'"moved"' in m.value) + 1
    catalog = IcebergCatalogResource().load()
    source = _customers()
    seen = {}
    for engine in ("arrow", "spark"):
        for name in (*CDC_TABLES, source.bronze_table):
            catalog.drop_table(name) if catalog.table_exists(name) else None
        offset, states = 0, []
        for n, batch in enumerate((messages[:split], messages[split:])):
            offset = _land_changes(catalog, source, batch, n, offset)
            assert _built(_build(engine))["lakehouse/engine"] == engine
            states.append(_tables(catalog))
        seen[engine] = states
    assert seen["spark"] == seen["arrow"]


@pytest.mark.parametrize("kind", ["timestamp", "composite"])
def test_the_engines_agree_on_timestamp_decimal_and_date_keys(spark_env, monkeypatch, kind):
    """A key that is a timestamp, or a timestamp, a decimal, a date and a text that is
    null for some keys (tests/cdc_keys.py), in increments of more keys than
    ``tables.replace.FEW_KEYS``: the Spark engine, whose partitions group a key's
    changes with its stored versions by ``tables.replace.key_text``, writes the Arrow
    engine's rows, increment by increment, and both equal Spark's full rebuild."""
    from lakehouse.quality import contracts
    from tests.cdc_keys import keyed_increments, keyed_source

    source = keyed_source(kind)
    shipped = contracts._table_sources
    monkeypatch.setattr(contracts, "_table_sources", lambda: [*shipped(), source])
    catalog = IcebergCatalogResource().load()
    name = source.name
    names = (f"silver.{name}", f"silver.{name}_history", f"quarantine.{name}")
    seen = {}
    for engine in ("arrow", "spark"):
        for name in (*names, source.bronze_table):
            catalog.drop_table(name) if catalog.table_exists(name) else None
        offset, states = 0, []
        for n, batch in enumerate(keyed_increments(seed=3)):
            offset = _land_changes(catalog, source, batch, n, offset)
            built = _built(_build(engine, source=source), source.name)
            assert (built["lakehouse/engine"], built["lakehouse/silver_mode"]) == (
                engine,
                "full" if n == 0 else "incremental",
            )
            states.append(_tables(catalog, names))
        seen[engine] = states
    for n, (arrow, spark) in enumerate(zip(seen["arrow"], seen["spark"], strict=True)):
        for name in names:
            assert spark[name] == arrow[name], f"{name} after increment {n}"
    assert (
        _built(_build("spark", full=True, source=source), source.name)["lakehouse/silver_mode"]
        == "full"
    )
    assert _tables(catalog, names) == seen["spark"][-1]
    assert len(seen["spark"][-1][names[1]]) > 700


def test_auto_chooses_spark_from_the_threshold(spark_env, monkeypatch):
    """A build with more changes to read than the threshold runs on Spark, and says so."""

    catalog = IcebergCatalogResource().load()
    source = _customers()
    offset = 0
    for n, batch in enumerate(_customers_increments(seed=5)[:2]):
        offset = _land_changes(catalog, source, batch, n, offset)
    monkeypatch.setenv("LAKEHOUSE_SPARK_ENGINE_MIN_CHANGES", str(offset))
    built = _built(_build("auto"))
    assert built["lakehouse/engine"] == "spark"
    assert f"{offset:,} changelog records to read" in built["lakehouse/engine_reason"]
    monkeypatch.setenv("LAKEHOUSE_SPARK_ENGINE_MIN_CHANGES", str(offset + 1))
    _land_changes(catalog, source, _customers_increments(seed=5)[2], 2, offset)
    assert _built(_build("auto"))["lakehouse/engine"] == "arrow"


# ---------------------------------------------------------------- interop


def test_spark_reads_a_pyiceberg_table_row_for_row(spark_env):
    catalog = IcebergCatalogResource().load()
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("amount", pa.decimal128(10, 2)),
            ("day", pa.date32()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("flag", pa.bool_()),
        ]
    )
    rng = random.Random(3)
    rows = [
        {
            "id": i,
            "name": None if i % 13 == 0 else f"name-{i}-é",
            "amount": Decimal(rng.randint(-10_000, 10_000)).scaleb(-2),
            "day": date(2026, 11, 1) + timedelta(days=i % 5),
            "ts": DAY0 + timedelta(seconds=i * 37, microseconds=i),
            "flag": i % 2 == 0,
        }
        for i in range(2000)
    ]
    catalog.create_namespace_if_not_exists("silver")
    table = catalog.create_table("silver.interop", schema=schema)
    table.append(pa.Table.from_pylist(rows, schema=schema))
    table.append(pa.Table.from_pylist(rows[:10], schema=schema))  # two snapshots

    spark = SparkResource()
    try:
        got = [r.asDict() for r in spark.session().table("silver.interop").collect()]
    finally:
        spark.teardown_after_execution(None)
    key = lambda r: (r["id"], r["ts"])  # noqa: E731
    expected = sorted(rows + rows[:10], key=key)
    got = sorted(({**r, "ts": r["ts"].replace(tzinfo=UTC)} for r in got), key=key)
    assert got == expected


def test_concurrent_pyiceberg_and_spark_commits_both_land(spark_env):
    """Spark replaces days of silver.sessions while pyiceberg appends another day."""
    from lakehouse.defs.silver.spark import silver_sessions
    from lakehouse.spark.sessions import SESSIONS_ARROW

    catalog = IcebergCatalogResource().load()
    rows = _page_views(random.Random(21))
    table = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    table.append(pa.Table.from_pylist(rows, schema=SILVER_PAGE_VIEWS.arrow_schema()))
    assert _materialize([silver_sessions], ("2026-11-01", "2026-11-01")).success

    appended: list[str] = []
    errors: list[BaseException] = []

    def append_sessions() -> None:
        try:
            sessions = catalog.load_table("silver.sessions")
            for i in range(15):
                session_id = f"imported:{i}"
                start = datetime(2026, 11, 20, 8, tzinfo=UTC) + timedelta(minutes=i)
                batch = {name: [None] for name in SESSIONS_ARROW.names} | {
                    "session_id": [session_id],
                    "user_id": ["imported"],
                    "session_date": [start.date()],
                    "session_start": [start],
                    "session_end": [start],
                }
                sessions.append(pa.Table.from_pydict(batch, schema=SESSIONS_ARROW))
                appended.append(session_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writer = threading.Thread(target=append_sessions)
    writer.start()
    spark_runs = [
        _materialize([silver_sessions], (day, day))
        for day in ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-02")
    ]
    writer.join()
    assert not errors, errors
    assert all(r.success for r in spark_runs)
    got = _read_sessions(catalog)
    assert {k for k in got if k.startswith("imported:")} == set(appended)
    assert len(appended) == 15
    spark_rows = {k: v for k, v in got.items() if not k.startswith("imported:")}
    assert spark_rows == _expected_sessions(rows, date(2026, 11, 1), date(2026, 11, 3))


# ---------------------------------------------------------------- the job, fresh process

_JOB_SCRIPT = """
import json, time
began = time.monotonic()
import dagster as dg
from pyspark import SparkContext
from lakehouse.definitions import defs
job = defs.resolve_job_def("spark")
with dg.DagsterInstance.ephemeral() as instance:
    result = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2026-11-01",
              "dagster/asset_partition_range_end": "2026-11-02"},
        raise_on_error=False,
    )
    logs = [e.user_message for e in instance.all_logs(result.run_id)
            if e.user_message.startswith("Spark:")]
meta = {
    m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()
                                   if k.startswith(("spark_", "rows_"))}
    for m in (e.event_specific_data.materialization
              for e in result.get_asset_materialization_events())
}
print(json.dumps({"success": result.success, "tags": job.tags, "logs": logs, "meta": meta,
                  "stopped": SparkContext._active_spark_context is None,
                  "seconds": time.monotonic() - began}))
"""


def test_spark_job_runs_in_a_fresh_process_and_stops_its_session(spark_env, spark_jars_dir, defs):
    catalog = IcebergCatalogResource().load()
    rows = _page_views(random.Random(2))
    ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS).append(
        pa.Table.from_pylist(rows, schema=SILVER_PAGE_VIEWS.arrow_schema())
    )
    done = subprocess.run(
        [sys.executable, "-c", _JOB_SCRIPT],
        capture_output=True,
        text=True,
        env={**os.environ, "LAKEHOUSE_SPARK_JARS_DIR": str(spark_jars_dir)},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["success"], done.stderr[-3000:]
    assert report["tags"]["lakehouse/engine"] == "spark"
    assert report["stopped"]
    # one summary line per asset, not Spark's log
    assert len(report["logs"]) == len(report["meta"])
    assert set(report["meta"]) == {"silver/sessions"}
    assert report["meta"]["silver/sessions"]["spark_session_seconds"] > 0
    # Spark's log stays at WARN: no INFO lines from the JVM (Dagster's own lines differ)
    jvm_info = re.compile(r"^(\d\d/\d\d/\d\d )?\d\d:\d\d:\d\d INFO ", re.MULTILINE)
    assert not jvm_info.findall(done.stderr)
    print(f"spark job in a fresh process: {report['seconds']:.1f} s; {report['meta']}")
    assert _read_sessions(catalog) == _expected_sessions(rows, date(2026, 11, 1), date(2026, 11, 2))


# ---------------------------------------------------------------- configuration


def test_session_conf_mounts_the_one_catalog_and_remote_mode_leaves_static_conf_to_the_cluster(
    spark_jars_dir, tmp_path
):
    from lakehouse.catalog_config import spark_conf
    from resources.spark import remote_conf

    settings = LakehouseSettings(
        state_dir=tmp_path, spark_jars_dir=spark_jars_dir, spark_shuffle_partitions=7
    )
    local = session_conf(settings)
    assert local["spark.master"] == "local[*]"
    assert local["spark.sql.session.timeZone"] == "UTC"
    assert local["spark.sql.shuffle.partitions"] == "7"
    assert "iceberg-spark-runtime" in local["spark.jars"]
    assert local["spark.driver.extraClassPath"].endswith("postgresql.jar")
    assert spark_conf(settings).items() <= local.items()
    remote = remote_conf(settings)
    assert remote["spark.sql.catalog.lakehouse.uri"] == local["spark.sql.catalog.lakehouse.uri"]
    assert not [k for k in remote if k.startswith(("spark.jars", "spark.driver", "spark.master"))]
    assert "spark.sql.extensions" not in remote


def test_spark_assets_have_their_own_job_and_stay_out_of_the_demo_graph(defs):
    repo = defs.get_repository_def()
    spark_job = repo.get_job("spark")
    assert spark_job.tags["lakehouse/engine"] == "spark"
    keys = {k.to_user_string() for k in spark_job.asset_layer.executable_asset_keys}
    assert keys == {"silver/sessions"}
    graph = repo.asset_graph
    assert all(graph.get(dg.AssetKey.from_user_string(k)).partitions_def for k in keys)
    demo = repo.get_job("lakehouse").asset_layer.executable_asset_keys
    assert not {k.to_user_string() for k in demo} & keys
    for key in keys:
        node = graph.get(dg.AssetKey.from_user_string(key))
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    # the CDC silver assets are no Spark assets: a job runs them with engine spark
    cdc = repo.get_job("cdc_on_spark")
    assert cdc.tags["lakehouse/engine"] == "spark"
    cdc_keys = {k.to_user_string() for k in cdc.asset_layer.executable_asset_keys}
    assert {"silver/customers", "silver/customers_history", "quarantine/customers"} <= cdc_keys
    ops = cdc.run_config["ops"] if isinstance(cdc.run_config, dict) else None
    assert ops and {c["config"]["engine"] for c in ops.values()} == {"spark"}
