"""The silver contracts and their policies, side by side: one place to read what silver promises.

Declaring a contract here is all a silver table needs: the silver assets enforce it
(quarantine) and ``lakehouse.defs.silver.contract_checks`` turns every rule into an asset check
(blocking for ``fail``, WARN for ``warn``). A CDC table without a declared contract
(or a typed database/landing table) gets one from ``sources.yml`` (non-null unique
keys, masked PII), all rules ``fail``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from lakehouse.declarations.pii import TOKEN_PREFIX
from lakehouse.declarations.sources import CdcSource, DatabaseSource, LandingSource, sources
from lakehouse.quality.history import history_contract
from lakehouse.quality.masked import HEX64, masked_form_checks
from lakehouse.quality.policy import Column, Contract, Policy

if TYPE_CHECKING:
    import pandas as pd

TableSource = CdcSource | DatabaseSource | LandingSource

CLOCK_FLOOR = datetime(2000, 1, 1)
CLOCK_SKEW = timedelta(days=1)


# The dataframe-level rules take the frame pandera validates and say, per row, whether
# it keeps the rule. pandas is imported when they run, not when the contracts load.


def event_ts_not_in_future(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return df["event_ts"] <= pd.Timestamp.now("UTC").tz_localize(None) + CLOCK_SKEW


def event_date_matches_event_ts(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(df["event_date"]) == df["event_ts"].dt.normalize()


def product_page_has_product_id(df: pd.DataFrame) -> pd.Series:
    return ~df["page"].str.startswith("/product/", na=False) | df["product_id"].notna()


PAGE_VIEWS = Contract(
    "silver.page_views",
    {
        "event_id": Column("str", nullable=False, unique=True),
        "user_id": Column("str", nullable=False, checks={"str_matches": HEX64}),
        "session_id": Column("str", nullable=False),
        "page": Column("str", nullable=False, checks={"str_startswith": "/"}),
        "product_id": Column("str", nullable=True),
        "event_ts": Column(
            "datetime", nullable=False, checks={"greater_than_or_equal_to": CLOCK_FLOOR}
        ),
    },
    checks={
        "event_ts_not_in_future": event_ts_not_in_future,
        "event_date_matches_event_ts": event_date_matches_event_ts,
        "product_page_has_product_id": product_page_has_product_id,
    },
    policies={
        # a page that is not a path cannot be attributed: set it aside, keep the rest
        "page:str_startswith": Policy.QUARANTINE,
        # clocks a day ahead are suspicious but the view happened: keep it, flag it
        "event_ts_not_in_future": Policy.WARN,
        "product_page_has_product_id": Policy.WARN,
        "session_id:not_nullable": Policy.WARN,
        # everything else (keys, masking, a clock before 2000, date/ts agreement) fails:
        # gold must not be built on it
    },
    partition_column="event_date",
    description="silver.page_views: one row per page view, keyed by event_id, user masked.",
    key_columns=("event_id",),
)


def credit_in_range(df: pd.DataFrame) -> pd.Series:
    return df["credit"].astype(float).between(-100_000, 10_000_000)


def signed_up_before_update(df: pd.DataFrame) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(df["signup_date"]) <= df["updated_at"]


CUSTOMERS = Contract(
    "silver.customers",
    {
        "customer_id": Column("str", nullable=False, unique=True, checks={"str_startswith": "c-"}),
        "email": Column("str", nullable=False, checks={"str_matches": HEX64}),
        "full_name": Column("str", nullable=False, checks={"str_startswith": TOKEN_PREFIX}),
        "country": Column("str", nullable=False, checks={"str_matches": r"^[A-Z]{2}$"}),
        "credit": Column("object", nullable=False),
    },
    checks={
        "credit_in_range": credit_in_range,
        "signed_up_before_update": signed_up_before_update,
    },
    policies={
        "country:str_matches": Policy.QUARANTINE,
        "credit_in_range": Policy.QUARANTINE,
        "signed_up_before_update": Policy.WARN,
    },
    description="silver.customers: current state of the shop's customers, PII masked.",
    key_columns=("customer_id",),
)

DECLARED: dict[str, Contract] = {c.table: c for c in (PAGE_VIEWS, CUSTOMERS)}


def default_contract(source: TableSource) -> Contract:
    """Keys present and unique, masked PII columns in their masked form; all ``fail``."""
    single_key = source.keys[0] if len(source.keys) == 1 else None
    columns = {
        name: Column(
            nullable=name not in source.keys,
            unique=name == single_key,
            checks=masked_form_checks(source.pii.get(name)),
        )
        for name in source.columns
    }
    return Contract(
        f"silver.{source.name}",
        columns,
        unique=tuple(source.keys) if len(source.keys) > 1 else None,
        description="declared in sources.yml",
        key_columns=tuple(source.keys),
    )


# the name the CDC tables were first built with
default_cdc_contract = default_contract


def _table_sources() -> list[TableSource]:
    declared = sources()
    return [*declared.cdc, *declared.database, *declared.landing]


def contract_for(table: str) -> Contract | None:
    if table in DECLARED:
        return DECLARED[table]
    name = table.split(".", 1)[1]
    for source in _table_sources():
        if source.name == name:
            return default_contract(source)
    return None


def silver_contracts() -> list[Contract]:
    """Every silver table's contract: the declared ones, else one from sources.yml."""
    tables = ["silver.page_views", *(f"silver.{s.name}" for s in _table_sources())]
    declared = [c for c in map(contract_for, tables) if c is not None]
    return [*declared, *(history_contract(s) for s in sources().cdc)]
