"""Contracts with a policy per rule: warn, quarantine or fail (Databricks' expectations, plus
quarantine tables a person can inspect and replay).

A contract declares its columns (type, nullable, unique, pandera's built-in checks) and
its dataframe-level checks; pandera evaluates them (``Contract.schema``). Each check is a
*rule*, named ``<column>:<check>`` (``page:str_startswith``,
``event_id:field_uniqueness``) or, for a dataframe-level check, by the check's name.
``policies`` says what a violation does:

- ``warn``: the rows flow into silver; the rule's asset check is a WARN.
- ``quarantine``: the violating rows go to ``quarantine.<table>`` with rule and reason,
  the rest flows; the check passes when silver holds none of them.
- ``fail``: the rows flow, the rule's check is blocking and fails, so nothing
  downstream materializes in that run (nor later, until the data is fixed).

Rules a contract does not name get its ``default`` policy (``fail``), so a new check
is strict until someone decides otherwise. Schema-level failures (a column missing,
a wrong dtype) are always ``fail``: there is no row to quarantine.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pandera.pandas as pa
    import pyarrow

    FrameCheck = Callable[[pd.DataFrame], pd.Series]

SCHEMA_RULE = "schema"
# what pandera's first import sets in the process environment when pyspark is installed
# (for pandas-on-Spark, which the lakehouse does not use)
PANDERA_ENVIRONMENT = ("PYARROW_IGNORE_TIMEZONE", "SPARK_LOCAL_IP")
EXAMPLES = 10


class Policy(StrEnum):
    WARN = "warn"
    QUARANTINE = "quarantine"
    FAIL = "fail"


@dataclass(frozen=True)
class Column:
    """One column of a contract: its type, whether it may be null or repeat, and pandera's
    built-in checks by name with their argument (``{"str_matches": HEX64}``).

    Declared without pandera, so the code location names every rule (one asset check
    each) without importing pandera, pandas and the pyspark.pandas pandera brings
    (``tests/test_load_time.py``); ``Contract.schema`` builds the pandera column.
    """

    dtype: str | None = None  # "str", "object" or "datetime"; None: any
    nullable: bool = True
    unique: bool = False
    checks: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    """What a silver table promises downstream, and what each broken promise does."""

    table: str  # Iceberg identifier, e.g. "silver.page_views" (the asset key too)
    columns: Mapping[str, Column]
    # rules over the whole frame, by name: a boolean per row (False breaks the rule)
    checks: Mapping[str, FrameCheck] = field(default_factory=dict)
    unique: tuple[str, ...] | None = None  # columns unique together
    policies: Mapping[str, Policy] = field(default_factory=dict)
    default: Policy = Policy.FAIL
    partition_column: str | None = None  # quality score per value of this column
    description: str = ""
    # what identifies a row: a check evaluates the rows of a key together (a bucket of
    # keys at a time when they do not fit one frame), so a frame-level check may compare
    # rows of one key, never rows of different keys
    key_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.policies) - set(self.rules))
        if unknown:
            raise ValueError(
                f"{self.table}: policies for unknown rules {unknown}; rules are {self.rules}"
            )

    @property
    def asset_key(self) -> list[str]:
        return self.table.split(".")

    @property
    def quarantine_table(self) -> str:
        return f"quarantine.{self.table.split('.', 1)[1]}"

    @property
    def rules(self) -> list[str]:
        """Every rule, in declaration order, named as pandera reports its failures."""
        names = []
        for name, column in self.columns.items():
            if not column.nullable:
                names.append(f"{name}:not_nullable")
            if column.unique:
                names.append(f"{name}:field_uniqueness")
            names.extend(f"{name}:{check}" for check in column.checks)
        if self.unique:
            names.append("multiple_fields_uniqueness")
        names.extend(self.checks)
        return [SCHEMA_RULE, *dict.fromkeys(names)]

    @property
    def uniqueness(self) -> dict[str, tuple[str, ...]]:
        """Each uniqueness rule, named as in ``rules``, and the columns it holds unique."""
        out = {f"{n}:field_uniqueness": (n,) for n, c in self.columns.items() if c.unique}
        if self.unique:
            out["multiple_fields_uniqueness"] = tuple(self.unique)
        return out

    def policy(self, rule: str) -> Policy:
        if rule == SCHEMA_RULE:
            return Policy.FAIL
        return self.policies.get(rule, self.default)

    @cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema that evaluates the rules (built on first use)."""
        pa = pandera()

        dtypes = {"str": str, "object": object, "datetime": pa.DateTime, None: None}
        columns = {
            name: pa.Column(
                dtypes[column.dtype],
                nullable=column.nullable,
                unique=column.unique,
                required=True,
                checks=[getattr(pa.Check, check)(arg) for check, arg in column.checks.items()],
            )
            for name, column in self.columns.items()
        }
        return pa.DataFrameSchema(
            columns,
            checks=[pa.Check(check, name=name) for name, check in self.checks.items()],
            unique=list(self.unique) if self.unique else None,
            name=self.table.split(".", 1)[1],
        )


@dataclass
class RuleOutcome:
    rule: str
    policy: Policy
    failing_rows: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)
    index: set = field(default_factory=set)  # row labels that broke it

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


@dataclass
class Evaluation:
    """The contract's verdict on one frame: per rule, which rows broke it."""

    rows: int
    outcomes: dict[str, RuleOutcome]

    def failing_index(self, *policies: Policy) -> set:
        out: set = set()
        for outcome in self.outcomes.values():
            if outcome.policy in policies:
                out |= outcome.index
        return out

    @property
    def clean_rows(self) -> int:
        return self.rows - len(self.failing_index(*Policy))


def pandera():
    """``pandera.pandas``, imported inside ``pandera_leaves_environment``."""
    with pandera_leaves_environment():
        import pandera.pandas

    return pandera.pandas


@contextlib.contextmanager
def pandera_leaves_environment() -> Iterator[None]:
    """Whatever pandera does inside, the process environment is as it was.

    With pyspark installed, pandera sets ``PYARROW_IGNORE_TIMEZONE=1`` and
    ``SPARK_LOCAL_IP=127.0.0.1`` when it is imported, and again when a validation first
    loads its pyspark backend (both for pandas-on-Spark, which the lakehouse does not
    use). pyarrow takes the first, whatever its value, as "convert an aware ``datetime``
    by its wall time, as if it were UTC": every later ``pa.array`` of a timestamp at
    another offset in the step (a Debezium ``ZonedTimestamp``, a landing value with an
    offset) would land shifted by that offset. The second would pin a Spark session
    started later in the process to the loopback interface.
    """
    import os

    unset = [name for name in PANDERA_ENVIRONMENT if name not in os.environ]
    try:
        yield
    finally:
        for name in unset:
            os.environ.pop(name, None)


def _rule_name(column: Any, check: str, schema_context: str, schema_name: str | None) -> str:
    import pandas as pd

    name = re.split(r"\(", str(check), maxsplit=1)[0]
    if name.startswith("dtype") or name == "column_in_dataframe" or name == "column_in_schema":
        return SCHEMA_RULE
    if schema_context == "DataFrameSchema" or column in (None, schema_name) or pd.isna(column):
        return name
    return f"{column}:{name}"


def contract_frame(rows: pyarrow.Table) -> pd.DataFrame:
    """The frame a contract evaluates and silver is written back from: integers stay
    exact. Plain ``to_pandas`` turns an integer column with a null into float64, and a
    ``long`` above 2**53 came back to Iceberg off by one."""
    import pandas as pd
    import pyarrow

    integers = {
        pyarrow.int8(): pd.Int8Dtype(),
        pyarrow.int16(): pd.Int16Dtype(),
        pyarrow.int32(): pd.Int32Dtype(),
        pyarrow.int64(): pd.Int64Dtype(),
    }
    return rows.to_pandas(types_mapper=integers.get)


def validation_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Time zones normalised to naive UTC, so contracts compare timestamps plainly."""
    import pandas as pd

    out = df.copy()
    for name in out.columns:
        if isinstance(out[name].dtype, pd.DatetimeTZDtype):
            out[name] = out[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def evaluate(contract: Contract, df: pd.DataFrame) -> Evaluation:
    """Run every rule lazily and group the failure cases by rule."""
    frame = validation_frame(df)
    outcomes = {r: RuleOutcome(r, contract.policy(r)) for r in contract.rules}
    for rule, labels in failing_labels(contract, frame).items():
        outcomes.setdefault(rule, RuleOutcome(rule, contract.policy(rule))).index |= labels
    for outcome in outcomes.values():
        rows = sorted(i for i in outcome.index if i is not None)
        outcome.failing_rows = len(rows) + (1 if None in outcome.index and not rows else 0)
        outcome.examples = examples(frame, rows)
        if None in outcome.index and not rows:
            outcome.examples = [whole_table_example(outcome.rule)]
        outcome.index.discard(None)
    return Evaluation(len(df), outcomes)


def failing_labels(contract: Contract, frame: pd.DataFrame) -> dict[str, set]:
    """The labels of ``frame`` (a ``validation_frame``) each rule failed on; None for a
    failure of the whole frame (a column missing, a wrong dtype)."""
    import pandas as pd

    pa = pandera()
    out: dict[str, set] = {}
    try:
        with pandera_leaves_environment():
            contract.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        for case in cases.itertuples(index=False):
            rule = _rule_name(case.column, case.check, case.schema_context, contract.schema.name)
            label = case.index
            if label is None or (isinstance(label, float) and pd.isna(label)):
                label = None  # a whole-table failure: no row to point at
            out.setdefault(rule, set()).add(label)
    return out


def examples(frame: pd.DataFrame, labels: list) -> list[dict[str, Any]]:
    """The first ``EXAMPLES`` of ``labels``' rows, as JSON values."""
    return [{k: _jsonable(v) for k, v in frame.loc[i].items()} for i in labels[:EXAMPLES]]


def whole_table_example(rule: str) -> dict[str, Any]:
    return {"failure": "whole table", "rule": rule}


@dataclass
class Enforced:
    """Rows that flow into silver, rows quarantined (with rule and reason), and the verdict."""

    passed: pd.DataFrame
    quarantined: pd.DataFrame  # the original columns plus _rule and _reason
    evaluation: Evaluation
    frame: pd.DataFrame  # everything that was evaluated (labels of the evaluation)

    def quality_score(self, earlier_rejects: int = 0) -> float:
        total = self.evaluation.rows + earlier_rejects
        return round(self.evaluation.clean_rows / total, 6) if total else 1.0


def enforce(contract: Contract, df: pd.DataFrame) -> Enforced:
    """Split ``df`` per the contract: quarantine-policy violations leave, the rest flows.

    A row that breaks several quarantine rules is quarantined once, under the first
    rule in declaration order; the reason lists every rule it broke.
    """
    df = df.reset_index(drop=True)
    evaluation = evaluate(contract, df)
    broken: dict[Any, list[str]] = {}
    for rule in contract.rules:
        outcome = evaluation.outcomes.get(rule)
        if outcome and outcome.policy is Policy.QUARANTINE:
            for label in outcome.index:
                broken.setdefault(label, []).append(rule)
    labels = sorted(broken)
    quarantined = df.loc[labels].copy()
    quarantined["_rule"] = [broken[i][0] for i in labels]
    quarantined["_reason"] = [
        f"{contract.table} contract: broke {', '.join(broken[i])}" for i in labels
    ]
    passed = df.drop(index=labels).reset_index(drop=True)
    return Enforced(passed, quarantined, evaluation, df)


def score_by_partition(contract: Contract, enforced: Enforced) -> dict[str, float]:
    """Share of clean rows per value of the contract's partition column."""
    column = contract.partition_column
    if column is None:
        return {}
    bad = enforced.evaluation.failing_index(*Policy)
    keys = enforced.frame[column].astype(str)
    totals = keys.value_counts()
    failing = keys[keys.index.isin(bad)].value_counts()
    return {k: round(1 - int(failing.get(k, 0)) / int(n), 6) for k, n in sorted(totals.items())}


def _jsonable(value: Any) -> Any:
    import pandas as pd

    if hasattr(value, "item") and not isinstance(value, str | bytes):
        with contextlib.suppress(TypeError, ValueError):
            value = value.item()  # numpy scalars
    if value is None or isinstance(value, bool | int | float | str):
        return None if isinstance(value, float) and pd.isna(value) else value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def to_json(row: Mapping[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in row.items()}, sort_keys=True)
