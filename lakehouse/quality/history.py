"""The contract of a CDC table's SCD type 2 history (``silver.<cdc>_history``).

Gold and analysts query "the row as of time T": that is only sound if the versions of
a key form one timeline. The rules say so row by row, so a failure points at the
versions that break it:

- ``one_current_version_per_key``: at most one ``is_current`` row per key;
- ``valid_from_not_after_valid_to``: a closed version does not end before it starts;
  it may end where it starts (a zero-length version: see below);
- ``versions_contiguous``: a key's versions do not overlap and each starts where the
  previous one ended; a gap is allowed only before a re-insert (``_op`` ``c`` or
  ``r``: the row was deleted or the table truncated in between);
- ``current_iff_open``: ``is_current`` exactly when ``valid_to`` is null;

plus the declared columns (keys and ``valid_from`` present, masked PII in masked form).

Version boundaries are ordered by LSN, not by clock: a key's versions follow its
changes in LSN order (row locks make that the order their transactions committed
in), and a version starts at its change's commit time (``source.ts_ms``), or at its
predecessor's boundary when that is later (snapshot reads carry the snapshot's time,
which can be after a commit they precede). Several changes to one row in one
transaction share a commit time, so all but the last make zero-length versions
(``valid_from == valid_to``): they stay in the history as the audit of what the
transaction did, and an as-of query (``valid_from <= T < valid_to``) never returns
them, which is right: no other transaction could see those states.
The history is written whole by the CDC silver asset and has no quarantine: every
rule is ``fail`` (blocking), since a broken timeline gives wrong answers downstream
rather than a few bad rows. That the current versions are ``silver.<cdc>`` is the
blocking reconciliation check ``history_matches_current``
(``lakehouse.defs.silver.reconciliation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lakehouse.declarations.sources import CdcSource
from lakehouse.quality.masked import masked_form_checks
from lakehouse.quality.policy import Column, Contract, Policy

if TYPE_CHECKING:
    import pandas as pd

REOPENING_OPS = ("c", "r")  # a version after a gap must (re)create the row

HISTORY_RULES = (
    "one_current_version_per_key",
    "valid_from_not_after_valid_to",
    "versions_contiguous",
    "current_iff_open",
)


def _key_frame(df: pd.DataFrame, keys: Sequence[str]) -> list[pd.Series]:
    return [df[k].astype("string") for k in keys]


def one_current_version(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    current = df["is_current"].fillna(False).astype(bool)
    per_key = current.groupby(_key_frame(df, keys), dropna=False).transform("sum")
    return ~current | (per_key <= 1)


def valid_from_not_after_valid_to(df: pd.DataFrame) -> pd.Series:
    return df["valid_to"].isna() | (df["valid_from"] <= df["valid_to"])


def current_iff_open(df: pd.DataFrame) -> pd.Series:
    current = df["is_current"]
    return current.notna() & (current.fillna(False).astype(bool) == df["valid_to"].isna())


def contiguous_versions(df: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Each version starts where its predecessor ended (or later, when it re-creates the row).

    The predecessor is the previous version of the key in (valid_from, _lsn) order (LSN
    order, as boundaries never decrease along it); a predecessor still open (no
    valid_to) overlaps everything after it.
    """
    import pandas as pd

    if df.empty:
        return pd.Series(True, index=df.index, dtype=bool)
    key_names = [f"__k{i}" for i in range(len(keys))]
    ordered = df.assign(**dict(zip(key_names, _key_frame(df, keys), strict=True)))
    ordered = ordered.sort_values([*key_names, "valid_from", "_lsn"], kind="stable")
    grouped = ordered.groupby(key_names, dropna=False, sort=False)
    first = grouped.cumcount() == 0
    previous_to = grouped["valid_to"].shift()
    starts = ordered["valid_from"]
    reopens = ordered["_op"].isin(REOPENING_OPS)
    ok = first | (
        previous_to.notna() & ((starts == previous_to) | ((starts > previous_to) & reopens))
    )
    return ok.reindex(df.index)


def history_contract(source: CdcSource) -> Contract:
    """silver.<source>_history: the declared columns plus the SCD2 timeline rules."""
    keys = tuple(source.keys)
    columns = {
        name: Column(nullable=name not in keys, checks=masked_form_checks(source.pii.get(name)))
        for name in source.columns
    }
    columns["valid_from"] = Column(nullable=False)
    columns["valid_to"] = Column(nullable=True)
    columns["is_current"] = Column(nullable=False)
    columns["_op"] = Column(nullable=True)
    columns["_lsn"] = Column(nullable=True)
    return Contract(
        f"silver.{source.name}_history",
        columns,
        checks={
            HISTORY_RULES[0]: lambda df: one_current_version(df, keys),
            HISTORY_RULES[1]: valid_from_not_after_valid_to,
            HISTORY_RULES[2]: lambda df: contiguous_versions(df, keys),
            HISTORY_RULES[3]: current_iff_open,
        },
        # explicit although it is the default: a history rule never quarantines (see above)
        policies={rule: Policy.FAIL for rule in HISTORY_RULES},
        description=f"SCD type 2 history of {source.topic}: one timeline per {', '.join(keys)}",
        key_columns=keys,
    )
