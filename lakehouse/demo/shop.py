"""The shop's OLTP database in PostgreSQL, when one is reachable.

It holds ``products``, the table the incremental (watermark) extraction reads.
``customers`` belongs to the CDC demo (``lakehouse.demo.cdc``), whose changes reach
Kafka as Debezium events.
"""

from __future__ import annotations

import random

import psycopg
from psycopg import sql

DDL = """
create table if not exists products (
    product_id text primary key,
    name text not null,
    category text not null,
    price numeric(10, 2) not null,
    updated_at timestamptz not null default now()
);
"""


def postgres_reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(_admin_dsn(dsn), connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def seed_shop(dsn: str, seed: int = 5) -> dict[str, int]:
    """Create the ``shop`` database and upsert deterministic rows; return row counts."""
    dbname = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(_admin_dsn(dsn), autocommit=True) as admin:
        exists = admin.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(dbname)))
    rng = random.Random(seed)
    products = [
        (
            f"p-{i:04d}",
            f"Product {i}",
            rng.choice(["books", "games", "garden"]),
            round(rng.uniform(2, 200), 2),
        )
        for i in range(200)
    ]
    with psycopg.connect(dsn) as conn:
        conn.execute(DDL)
        with conn.cursor() as cur:
            cur.executemany(
                "insert into products (product_id, name, category, price) values (%s, %s, %s, %s) "
                "on conflict (product_id) do nothing",
                products,
            )
        counts = {
            table: conn.execute(
                sql.SQL("select count(*) from {}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in ("products",)
        }
    return counts


def _admin_dsn(dsn: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params["dbname"] = "postgres"
    return psycopg.conninfo.make_conninfo(**params)
