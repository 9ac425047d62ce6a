"""The demo's shop database on the real PostgreSQL server (fails in CI when it is missing)."""

from __future__ import annotations

import psycopg

from lakehouse.demo.shop import seed_shop


def test_seed_shop_creates_database_and_is_idempotent(make_database):
    dsn = make_database("shop_test", create=False)  # seed_shop creates it
    first = seed_shop(dsn)
    second = seed_shop(dsn)
    assert first == second == {"products": 200}
    with psycopg.connect(dsn) as conn:
        names = conn.execute("select count(distinct product_id) from products").fetchone()[0]
    assert names == 200
