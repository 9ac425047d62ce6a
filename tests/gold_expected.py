"""Generated silver tables for the gold tests, and each gold business rule in pandas.

The pandas rules are written from the model descriptions, not from the SQL, so a
gold table that matches them says the dbt model does what its documentation says.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pandas as pd

from lakehouse.demo.cdc import generate_shop_changes

CHANNELS_WITH_SPEND = ["search", "social", "email", "display"]


def silver_rows(days: int = 3, seed: int = 21) -> dict[str, list[dict]]:
    """Rows for every silver table gold reads, spread over ``days`` days from Nov 1."""
    steps = 420 * days
    _, shop = generate_shop_changes(
        snapshot=30, steps=steps, seed=seed, mean_gap_s=86_400 * days // (steps + 40)
    )
    rng = random.Random(seed)
    customers = [
        {**row, "updated_at": row["updated_at"].replace(tzinfo=UTC)}
        for row in shop["customers"].values()
    ]
    end = date(2026, 11, 1) + timedelta(days=days)
    orders = [
        {
            **row,
            "order_ts": row["order_ts"].replace(tzinfo=UTC),
            "updated_at": row["updated_at"].replace(tzinfo=UTC),
        }
        for row in shop["orders"].values()
        if row["order_ts"].date() < end
    ]
    kept = {o["order_id"] for o in orders}
    items = [
        {**row, "updated_at": row["updated_at"].replace(tzinfo=UTC)}
        for row in shop["order_items"].values()
        if row["order_id"] in kept
    ]
    products = [
        {
            "product_id": f"p-{i:04d}",
            "name": f"Product {i}",
            "category": rng.choice(["books", "games", "garden"]),
            "price": Decimal(rng.randint(200, 20_000)).scaleb(-2),
            "updated_at": datetime(2026, 10, 1, tzinfo=UTC),
        }
        for i in range(200)
    ]
    pages = ["/", "/search", "/cart", "/checkout", "/account"]
    views = []
    for n in range(600 * days):
        ts = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randint(0, 86_400 * days - 1)
        )
        product = f"p-{rng.randrange(200):04d}" if rng.random() < 0.6 else None
        user = f"u-{rng.randrange(80):05d}"
        views.append(
            {
                "event_id": f"e-{n:08d}",
                "user_id": user,
                "session_id": f"s-{user}-{ts.hour // 2}",
                "page": f"/product/{product}" if product else rng.choice(pages),
                "product_id": product,
                "event_ts": ts,
                "event_date": ts.date(),
                "_kafka_partition": 0,
                "_kafka_offset": n,
            }
        )
    spend = [
        {
            "spend_date": date(2026, 11, 1) + timedelta(days=d),
            "channel": channel,
            "campaign": f"{channel}-{c:03d}",
            "spend": Decimal(rng.randint(1_000, 50_000)).scaleb(-2),
            "currency": "EUR",
        }
        for d in range(days)
        for channel in CHANNELS_WITH_SPEND
        for c in range(2)
    ]
    return {
        "customers": customers,
        "orders": orders,
        "order_items": items,
        "products": products,
        "page_views": views,
        "marketing_spend": spend,
    }


def _orders(rows) -> pd.DataFrame:
    orders = pd.DataFrame(rows["orders"])
    items = pd.DataFrame(rows["order_items"])
    items["amount"] = items["quantity"].map(Decimal) * items["unit_price"]
    per_order = items.groupby("order_id").agg(
        units=("quantity", "sum"), amount=("amount", lambda s: sum(s, Decimal(0)))
    )
    orders = orders.join(per_order, on="order_id")
    orders["units"] = orders["units"].fillna(0).astype(int)
    orders["amount"] = orders["amount"].map(lambda v: v if isinstance(v, Decimal) else Decimal(0))
    orders["order_date"] = orders["order_ts"].map(lambda ts: ts.date())
    orders["revenue"] = orders["status"] != "cancelled"
    return orders


def daily_revenue(rows) -> dict[date, dict]:
    orders = _orders(rows)
    out = {}
    for day, group in orders.groupby("order_date"):
        kept = group[group["revenue"]]
        revenue = sum(kept["amount"], Decimal(0))
        out[day] = {
            "orders": len(kept),
            "cancelled_orders": int((~group["revenue"]).sum()),
            "customers": kept["customer_id"].nunique(),
            "units_sold": int(kept["units"].sum()),
            "revenue": revenue,
            "avg_order_value": round(float(revenue) / len(kept), 2) if len(kept) else None,
        }
    return out


def customer_lifetime_value(rows) -> dict[str, dict]:
    orders = _orders(rows)
    customers = {c["customer_id"]: c for c in rows["customers"]}
    out = {}
    for customer, group in orders.groupby("customer_id"):
        kept = group[group["revenue"]]
        revenue = sum(kept["amount"], Decimal(0))
        known = customers.get(customer, {})
        out[customer] = {
            "country": known.get("country"),
            "first_order_date": group["order_date"].min(),
            "last_order_date": group["order_date"].max(),
            "orders": len(kept),
            "lifetime_revenue": revenue,
        }
    return out


def customer_segments(rows) -> dict[tuple[str, str], dict]:
    out: dict[tuple[str, str], dict] = {}
    for value in customer_lifetime_value(rows).values():
        revenue = value["lifetime_revenue"]
        tier = "high" if revenue >= 500 else "medium" if revenue >= 100 else "low"
        key = (value["country"] or "unknown", tier)
        entry = out.setdefault(key, {"customers": 0, "revenue": Decimal(0)})
        entry["customers"] += 1
        entry["revenue"] += revenue
    return out


def conversion_funnel(rows) -> dict[date, dict]:
    views = pd.DataFrame(rows["page_views"])
    orders = _orders(rows)
    booked = orders[orders["revenue"]].groupby("order_date").size()
    out = {}
    for day, group in views.groupby("event_date"):
        sessions = group.groupby("session_id")
        product = sessions["product_id"].apply(lambda s: s.notna().any())
        cart = sessions["page"].apply(lambda s: (s == "/cart").any())
        checkout = sessions["page"].apply(lambda s: (s == "/checkout").any())
        out[day] = {
            "sessions": len(product),
            "product_sessions": int(product.sum()),
            "cart_sessions": int((product & cart).sum()),
            "checkout_sessions": int((product & cart & checkout).sum()),
            "orders": int(booked.get(day, 0)),
        }
    return out


def product_performance(rows) -> dict[str, dict]:
    views = pd.DataFrame(rows["page_views"])
    view_counts = views[views["product_id"].notna()].groupby("product_id").size()
    orders = _orders(rows)
    kept = set(orders.loc[orders["revenue"], "order_id"])
    out = {}
    for product in rows["products"]:
        pid = product["product_id"]
        lines = [i for i in rows["order_items"] if i["product_id"] == pid and i["order_id"] in kept]
        out[pid] = {
            "page_views": int(view_counts.get(pid, 0)),
            "orders": len({i["order_id"] for i in lines}),
            "units_sold": sum(i["quantity"] for i in lines),
            "revenue": sum((i["quantity"] * i["unit_price"] for i in lines), Decimal(0)),
        }
    return out


def marketing_roi(rows) -> dict[tuple[date, str], dict]:
    orders = _orders(rows)
    kept = orders[orders["revenue"]]
    out = {}
    spend = pd.DataFrame(rows["marketing_spend"])
    for (day, channel), group in spend.groupby(["spend_date", "channel"]):
        attributed = kept[(kept["order_date"] == day) & (kept["channel"] == channel)]
        total = sum(group["spend"], Decimal(0))
        revenue = sum(attributed["amount"], Decimal(0))
        out[(day, channel)] = {
            "spend": total,
            "orders": len(attributed),
            "revenue": revenue,
            "roas": round(float(revenue) / float(total), 4),
        }
    return out
