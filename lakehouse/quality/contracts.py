"""The silver contracts and their policies, side by side: one place to read what silver promises.

Declaring a contract here is all a silver table needs: the silver assets enforce it
(quarantine) and ``lakehouse.defs.silver.contract_checks`` turns every rule into an asset check
(blocking for ``fail``, WARN for ``warn``). A CDC table without a declared contract
(or a typed database/landing table) gets one from ``sources.yml`` (non-null unique
keys, masked PII), all rules ``fail``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from lakehouse.declarations.sources import CdcSource, DatabaseSource, LandingSource, sources
from lakehouse.quality.history import history_contract
from lakehouse.quality.masked import HEX64, masked_form_checks
from lakehouse.quality.policy import Contract, Policy, contract_from_model
from lakehouse.transforms.masking import TOKEN_PREFIX

TableSource = CdcSource | DatabaseSource | LandingSource

CLOCK_FLOOR = datetime(2000, 1, 1)
CLOCK_SKEW = timedelta(days=1)


class PageViewModel(pa.DataFrameModel):
    """silver.page_views: one row per page view, keyed by event_id, user masked."""

    event_id: Series[str] = pa.Field(nullable=False, unique=True)
    user_id: Series[str] = pa.Field(nullable=False, str_matches=HEX64)
    session_id: Series[str] = pa.Field(nullable=False)
    page: Series[str] = pa.Field(nullable=False, str_startswith="/")
    product_id: Series[str] = pa.Field(nullable=True)
    event_ts: Series[pa.DateTime] = pa.Field(nullable=False, ge=CLOCK_FLOOR)

    @pa.dataframe_check
    def event_ts_not_in_future(cls, df: pd.DataFrame) -> Series[bool]:
        return df["event_ts"] <= pd.Timestamp.now("UTC").tz_localize(None) + CLOCK_SKEW

    @pa.dataframe_check
    def event_date_matches_event_ts(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.to_datetime(df["event_date"]) == df["event_ts"].dt.normalize()

    @pa.dataframe_check
    def product_page_has_product_id(cls, df: pd.DataFrame) -> Series[bool]:
        return ~df["page"].str.startswith("/product/", na=False) | df["product_id"].notna()

    class Config:
        strict = False
        coerce = False


PAGE_VIEWS = contract_from_model(
    "silver.page_views",
    PageViewModel,
    {
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
)


class CustomerModel(pa.DataFrameModel):
    """silver.customers: current state of the shop's customers, PII masked."""

    customer_id: Series[str] = pa.Field(nullable=False, unique=True, str_startswith="c-")
    email: Series[str] = pa.Field(nullable=False, str_matches=HEX64)
    full_name: Series[str] = pa.Field(nullable=False, str_startswith=TOKEN_PREFIX)
    country: Series[str] = pa.Field(nullable=False, str_matches=r"^[A-Z]{2}$")
    credit: Series[object] = pa.Field(nullable=False)

    @pa.dataframe_check
    def credit_in_range(cls, df: pd.DataFrame) -> Series[bool]:
        return df["credit"].astype(float).between(-100_000, 10_000_000)

    @pa.dataframe_check
    def signed_up_before_update(cls, df: pd.DataFrame) -> Series[bool]:
        return pd.to_datetime(df["signup_date"]) <= df["updated_at"]

    class Config:
        strict = False
        coerce = False


CUSTOMERS = contract_from_model(
    "silver.customers",
    CustomerModel,
    {
        "country:str_matches": Policy.QUARANTINE,
        "credit_in_range": Policy.QUARANTINE,
        "signed_up_before_update": Policy.WARN,
    },
    key_columns=("customer_id",),
)

DECLARED: dict[str, Contract] = {c.table: c for c in (PAGE_VIEWS, CUSTOMERS)}


def default_contract(source: TableSource) -> Contract:
    """Keys present and unique, masked PII columns in their masked form; all ``fail``."""
    columns = {}
    for name in source.columns:
        checks = masked_form_checks(source.pii.get(name))
        is_key = name in source.keys
        columns[name] = pa.Column(nullable=not is_key, checks=checks, required=True)
    unique = list(source.keys) if len(source.keys) > 1 else None
    if len(source.keys) == 1:
        columns[source.keys[0]].unique = True
    schema = pa.DataFrameSchema(columns, unique=unique, name=source.name)
    return Contract(
        f"silver.{source.name}",
        schema,
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
