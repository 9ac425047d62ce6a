"""Fixtures: a real Tansu broker and a real moto S3 server on free ports, and a
fresh catalog, warehouse, topic and bucket per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from lakehouse.settings import LakehouseSettings, get_settings
from lakehouse.stack import services as stack
from lakehouse.stack.provision import provision

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory) -> Iterator[LakehouseSettings]:
    """Tansu and moto started by the project's own stack code, stopped at the end."""
    state = tmp_path_factory.mktemp("stack")
    env = {
        "LAKEHOUSE_STATE_DIR": str(state),
        "LAKEHOUSE_KAFKA_PORT": str(stack.free_port()),
        "LAKEHOUSE_S3_PORT": str(stack.free_port()),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    settings = get_settings()
    started = []
    try:
        for service in stack.services(settings):
            stack.start(service, settings)
            started.append(service)
        yield settings
    finally:
        for service in started:
            stack.stop(service, settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def lakehouse_env(local_stack, tmp_path: Path, monkeypatch) -> LakehouseSettings:
    """Isolated catalog, warehouse, topic and bucket on the shared services."""
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LAKEHOUSE_KAFKA_TOPIC_PREFIX", f"t{suffix}.")
    monkeypatch.setenv("LAKEHOUSE_LANDING_BUCKET", f"landing-{suffix}")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    settings = get_settings()
    provision(settings)
    return settings


@pytest.fixture
def page_views_rebuilds(lakehouse_env) -> SimpleNamespace:
    """Empty bronze.clickstream and silver.page_views: ``bronze_commit()`` makes an
    empty position commit and returns its snapshot; ``rebuild(snapshot)`` overwrites
    silver recording that it was built from that bronze snapshot."""
    from lakehouse.declarations.layouts import SILVER_PAGE_VIEWS
    from lakehouse.declarations.sources import sources
    from lakehouse.tables.commits import append_with_position, ensure_table
    from lakehouse.tables.rebuilds import BUILT_FROM_KEY
    from resources.iceberg import IcebergCatalogResource

    catalog = IcebergCatalogResource().load()
    source = sources().kafka_source("clickstream")
    layout = source.layout
    bronze = ensure_table(catalog, source.bronze_table, layout)
    silver = ensure_table(catalog, "silver.page_views", SILVER_PAGE_VIEWS)
    commits = iter(range(1_000_000))

    def bronze_commit():
        n = next(commits)
        empty = layout.arrow_schema().empty_table()
        snapshot_id = append_with_position(bronze, empty, "t", {"0": n}, f"r{n}")
        return bronze.metadata.snapshot_by_id(snapshot_id)

    def rebuild(built_from) -> int:
        rows = SILVER_PAGE_VIEWS.arrow_schema().empty_table()
        recorded = {BUILT_FROM_KEY: str(built_from.snapshot_id)}
        silver.overwrite(rows, snapshot_properties=recorded)
        return silver.current_snapshot().snapshot_id

    return SimpleNamespace(
        bronze=bronze, silver=silver, bronze_commit=bronze_commit, rebuild=rebuild
    )


@pytest.fixture(scope="session")
def dbt_manifest() -> Path:
    """dbt's manifest, which the gold assets are defined from at import."""
    from lakehouse.cli import prepare_dbt
    from lakehouse.dbt.project import dbt_project

    prepare_dbt()
    return dbt_project.manifest_path


@pytest.fixture(scope="session")
def defs(dbt_manifest):
    from lakehouse.definitions import defs

    return defs


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """A PostgreSQL server to test against; in CI its absence is a failure, not a skip."""
    from lakehouse.demo.shop import postgres_reachable

    base = os.environ.get(
        "LAKEHOUSE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    if not postgres_reachable(base):
        message = f"PostgreSQL is not reachable at {base}"
        if IN_CI:
            pytest.fail(f"{message}; CI must not skip PostgreSQL tests")
        pytest.skip(f"SKIPPED LOUDLY: {message}; set LAKEHOUSE_TEST_POSTGRES to run these tests")
    return base


@pytest.fixture
def make_database(postgres_dsn):
    """Creates uniquely named databases on the test server; drops them afterwards."""
    import uuid

    import psycopg
    from psycopg import sql

    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    created: list[str] = []

    def make(prefix: str, create: bool = True) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        if create:
            with psycopg.connect(postgres_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        created.append(name)
        return psycopg.conninfo.make_conninfo(**{**params, "dbname": name})

    yield make
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        for name in created:
            drop = sql.SQL("drop database if exists {} with (force)")
            admin.execute(drop.format(sql.Identifier(name)))
