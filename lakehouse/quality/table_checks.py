"""A contract evaluated on the rows of a table in a scope, a bucket of keys at a time.

The rows in scope can be the whole table (a first evaluation, ``full: true``) or a large
increment, more than a check step may hold as one pandas frame. Every rule that looks
at more than one row compares rows of one key: uniqueness of the key (or of columns that
include it), a key's history timeline. So the rows are spilled to local disk in buckets
by a hash of the contract's key columns (``transforms.key_buckets``, as the typed silver
build does) and each bucket is evaluated on its own: the verdict is the one the whole
frame gets, and memory follows a bucket. Scopes that fit a bucket are read as one frame.

A uniqueness rule also looks outside the scope (its key columns only, a batch at a
time), since a new row can collide with an old one; unless the scope's column is one of
the rule's columns, in which case every row sharing a key is in scope already.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakehouse.quality.policy import (
    Contract,
    Evaluation,
    RuleOutcome,
    examples,
    failing_labels,
    validation_frame,
    whole_table_example,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyiceberg.table import DataScan, Table

    from lakehouse.quality.scope import Scope
    from lakehouse.transforms.key_buckets import KeyBuckets

# rows evaluated as one pandas frame at most: the check of 5.5M rows of TPC-H lineitem
# (16 columns) in buckets of 250,000 peaked at 644 MiB, the imports about 250 MiB of it
ROWS_PER_BUCKET = 250_000
KEY_ROWS_PER_CHUNK = 1_000_000  # rows of key columns read at once, outside the scope
OUTSIDE = "found_outside_scope"


def check_table(
    table: Table,
    contract: Contract,
    scope: Scope,
    rows_per_bucket: int = ROWS_PER_BUCKET,
    spill_directory: str | None = None,
) -> Evaluation:
    """The contract's verdict on ``table``'s rows in ``scope``: per rule, the failing row
    count and up to ten examples (row labels are the bucket's, so none are kept)."""
    from lakehouse.transforms.key_buckets import KeyBuckets, bucket_count

    scan = table.scan(row_filter=scope.file_filter)
    tasks = list(scan.plan_files())  # planned once: manifests are read for it
    rows = sum(task.file.record_count for task in tasks)
    buckets = bucket_count(rows, rows_per_bucket) if bucketable(contract) else 1
    collisions = {} if scope.full else outside_collisions(table, contract, scope)
    verdict = _Verdict(contract)
    spill = KeyBuckets(contract.key_columns, buckets, spill_directory) if buckets > 1 else None
    for part in _parts(table, scan, tasks, scope, spill, -(-rows // buckets)):
        verdict.add(part, collisions)
    return verdict.evaluation()


def bucketable(contract: Contract) -> bool:
    """Whether a bucket of keys is enough to evaluate every rule: the contract names its
    key, and each uniqueness rule's columns include it."""
    keys = set(contract.key_columns)
    return bool(keys) and all(keys <= set(columns) for columns in contract.uniqueness.values())


def outside_collisions(table: Table, contract: Contract, scope: Scope) -> dict[str, pa.Array]:
    """Per uniqueness rule, the keys (``key_text``) of rows in scope that a row outside the
    scope holds too. Memory follows the keys in scope and a batch of the rest."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lakehouse.tables.increments import scan_chunks
    from lakehouse.tables.replace import key_text

    out = {}
    for rule, columns in contract.uniqueness.items():
        if scope.column in columns:
            continue  # a row sharing this key has the scope's value: it is in scope
        fields = tuple(dict.fromkeys((*columns, scope.column)))
        inside = table.scan(row_filter=scope.file_filter, selected_fields=fields).to_arrow()
        inside = _in_scope(inside, scope)
        if inside.num_rows == 0:
            continue
        keys = pc.unique(key_text(inside, columns))
        found: list[pa.Array] = []
        every = table.scan(selected_fields=fields)
        for chunk in scan_chunks(table, every, KEY_ROWS_PER_CHUNK):
            chunk = chunk.filter(pc.invert(scope.mask(chunk)))  # outside the scope
            text = key_text(chunk, columns)
            found.extend(text.filter(pc.is_in(text, value_set=keys)).chunks)
        held = pc.unique(pa.chunked_array(found, pa.string()))
        if len(held):
            out[rule] = held
    return out


def _parts(
    table: Table,
    scan: DataScan,
    tasks: list,
    scope: Scope,
    spill: KeyBuckets | None,
    rows_per_chunk: int,
) -> Iterator[pa.Table]:
    """The rows of ``scan``'s ``tasks`` in ``scope``: whole without ``spill``, else
    spilled to its buckets (data files read about ``rows_per_chunk`` rows at a time) and
    handed back a bucket at a time."""
    from lakehouse.tables.increments import read_tasks, scan_chunks

    if spill is None:
        yield _in_scope(read_tasks(table, scan, tasks), scope)
        return
    with spill:
        for chunk in scan_chunks(table, scan, rows_per_chunk, tasks):
            spill.add(_in_scope(chunk, scope))
        yield from spill


def _in_scope(rows: pa.Table, scope: Scope) -> pa.Table:
    mask = scope.mask(rows)
    return rows if mask is None else rows.filter(mask)


@dataclass
class _Verdict:
    """Failing rows and examples per rule, summed over the parts evaluated."""

    contract: Contract
    rows: int = 0
    failing: dict[str, int] = field(default_factory=dict)
    whole: set[str] = field(default_factory=set)  # rules that failed on a whole frame
    shown: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, part: pa.Table, collisions: dict[str, pa.Array]) -> None:
        import pandas as pd

        frame = validation_frame(part.to_pandas())
        frame.index = pd.RangeIndex(self.rows, self.rows + len(frame))
        labels = failing_labels(self.contract, frame)
        outside = self._collided(part, frame, collisions)
        for rule, found in outside.items():
            labels.setdefault(rule, set()).update(found)
        for rule, found in labels.items():
            if None in found:
                self.whole.add(rule)
            rows = sorted(i for i in found if i is not None)
            self.failing[rule] = self.failing.get(rule, 0) + len(rows)
            room = 10 - len(self.shown.setdefault(rule, []))
            for label, example in zip(rows, examples(frame, rows[:room]), strict=False):
                if label in outside.get(rule, ()):
                    example[OUTSIDE] = True
                self.shown[rule].append(example)
        self.rows += len(frame)

    def _collided(
        self, part: pa.Table, frame: pd.DataFrame, collisions: dict[str, pa.Array]
    ) -> dict[str, set]:
        import pyarrow.compute as pc

        from lakehouse.tables.replace import key_text

        out = {}
        for rule, keys in collisions.items():
            columns = self.contract.uniqueness[rule]
            held = pc.is_in(key_text(part.select(columns), columns), value_set=keys)
            positions = pc.indices_nonzero(held).to_numpy()
            out[rule] = set(frame.index[positions])
        return out

    def evaluation(self) -> Evaluation:
        outcomes = {}
        for rule in dict.fromkeys([*self.contract.rules, *self.failing]):
            outcome = RuleOutcome(rule, self.contract.policy(rule))
            outcome.failing_rows = self.failing.get(rule, 0)
            outcome.examples = self.shown.get(rule, [])
            if rule in self.whole and not outcome.failing_rows:
                outcome.failing_rows = 1
                outcome.examples = [whole_table_example(rule)]
            outcomes[rule] = outcome
        return Evaluation(self.rows, outcomes)
