"""The demo's shop database on the real PostgreSQL server (fails in CI when it is missing)."""

from __future__ import annotations

import uuid

import psycopg
from psycopg import sql

from lakehouse.demo.shop import seed_shop


def test_seed_shop_creates_database_and_is_idempotent(postgres_dsn):
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    name = f"shop_test_{uuid.uuid4().hex[:8]}"
    dsn = psycopg.conninfo.make_conninfo(**{**params, "dbname": name})
    try:
        first = seed_shop(dsn)
        second = seed_shop(dsn)
        assert first == second == {"products": 200}
        with psycopg.connect(dsn) as conn:
            names = conn.execute("select count(distinct product_id) from products").fetchone()[0]
        assert names == 200
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )
