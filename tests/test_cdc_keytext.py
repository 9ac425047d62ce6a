"""Keys that are timestamps, decimals and dates: every caller of ``tables.replace`` names a
key by the same text, whether it holds the key as Python values or as Arrow columns.

Python's ``str`` of such a value is not Arrow's cast to text (``2024-01-01 00:00:00+00:00``
against ``2024-01-01 00:00:00.000000Z``, ``1.5`` against ``1.50``): compared that way a
replacement of many keys would keep the old row beside the new one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pytest

from lakehouse.defs.silver.builds import silver_shape
from lakehouse.quality.contracts import default_contract
from lakehouse.silver.cdc import CdcBuild
from lakehouse.tables.increments import FULL, INCREMENTAL
from lakehouse.tables.replace import FEW_KEYS, key_mask, key_text, replace_keys
from resources.iceberg import IcebergCatalogResource
from tests.cdc_keys import KEYS, keyed_increments, keyed_row, keyed_source
from tests.test_incremental_silver import _compare_with_full, _land_messages

START = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("kind", list(KEYS))
def test_many_keys_of_every_type_in_increments_equal_a_full_rebuild(lakehouse_env, kind):
    """Increments of 240 and 230 keys (and one of a few) leave exactly the rows a full
    rebuild writes: no key's old version stays beside its new one."""
    catalog = IcebergCatalogResource().load()
    source = keyed_source(kind)
    contract = default_contract(source)
    build = CdcBuild(
        catalog, source, silver_shape(source, contract), "silver-run", contract=contract
    )
    offset, modes = 0, []
    for n, batch in enumerate(keyed_increments(seed=len(kind))):
        offset = _land_messages(catalog, source, batch, n, offset, START + timedelta(minutes=n))
        modes.append(build.run().plan.mode)
        current = catalog.load_table(f"silver.{source.name}").scan().to_arrow()
        keys = current.select(source.keys).to_pylist()
        assert len(keys) == len({tuple(k.values()) for k in keys}), f"increment {n}"
    assert modes == [FULL, INCREMENTAL, INCREMENTAL, INCREMENTAL]
    names = [f"silver.{source.name}", f"silver.{source.name}_history"]
    tables = _compare_with_full(catalog, build, [*names, f"quarantine.{source.name}"])
    assert len(tables[names[0]]) > 200 and len(tables[names[1]]) > 700


def _typed_table(catalog, name: str):
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, DecimalType, NestedField, StringType, TimestamptzType

    schema = Schema(
        NestedField(1, "k_ts", TimestamptzType(), required=False),
        NestedField(2, "k_dec", DecimalType(10, 2), required=False),
        NestedField(3, "k_date", DateType(), required=False),
        NestedField(4, "k_text", StringType(), required=False),
        NestedField(5, "v", StringType(), required=False),
    )
    catalog.create_namespace_if_not_exists("silver")
    return catalog.create_table(name, schema=schema)


def _stored_rows(count: int, version: str) -> list[dict]:
    return [
        {k: v for k, v in keyed_row(i).items() if k != "n"} | {"v": version} for i in range(count)
    ]


@pytest.mark.parametrize("columns", [*KEYS.values(), ("k_text", "k_dec")])
@pytest.mark.parametrize("given", ["arrow", "python"])
def test_replace_keys_matches_typed_keys_given_as_python_values_or_arrow(
    lakehouse_env, columns, given
):
    """Many keys of a timestamp, decimal or date column (or a composite with a null part),
    passed as Python tuples (what CDC builds hold) or as an Arrow table (typed silver):
    each stored row of those keys is replaced, every other row stays."""
    catalog = IcebergCatalogResource().load()
    table = _typed_table(catalog, f"silver.replace_{given}_{'_'.join(columns)}")
    arrow_schema = table.schema().as_arrow()
    table.append(pa.Table.from_pylist(_stored_rows(600, "old"), schema=arrow_schema))
    new = pa.Table.from_pylist(_stored_rows(600, "new")[:300], schema=arrow_schema)
    if given == "arrow":
        keys = new.select(columns)
    else:  # as a change decodes them: a decimal without its trailing zero, a naive UTC time
        keys = {tuple(_as_decoded(r[c]) for c in columns) for r in new.select(columns).to_pylist()}
    assert len(new) > FEW_KEYS
    replace_keys(table, new, columns, keys, {"lakehouse.run-id": "r"})
    rows = table.scan().to_arrow()
    assert rows.num_rows == 600
    versions = [r["v"] for r in rows.sort_by("k_dec").to_pylist()]
    assert versions == ["new"] * 300 + ["old"] * 300


def _as_decoded(value):
    if isinstance(value, Decimal):
        return value.normalize() if value else Decimal(0)
    return value


def test_a_key_is_one_text_whether_python_values_or_arrow():
    """``key_mask`` with Python keys selects exactly the rows whose Arrow key is equal."""
    schema = pa.schema(
        [
            ("k_ts", pa.timestamp("us", tz="UTC")),
            ("k_dec", pa.decimal128(10, 2)),
            ("k_date", pa.date32()),
            ("k_text", pa.large_string()),
            ("flag", pa.bool_()),
            ("x", pa.float64()),
        ]
    )
    rows = pa.Table.from_pylist(
        [
            {
                "k_ts": datetime(2024, 1, 1, tzinfo=UTC),
                "k_dec": Decimal("1.50"),
                "k_date": date(2024, 1, 1),
                "k_text": None,
                "flag": True,
                "x": 1.0,
            },
            {
                "k_ts": datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC),
                "k_dec": Decimal("2.00"),
                "k_date": date(2024, 1, 2),
                "k_text": "",
                "flag": False,
                "x": 2.5,
            },
        ],
        schema=schema,
    )
    columns = tuple(schema.names)
    wanted = {(datetime(2024, 1, 1, tzinfo=UTC), Decimal("1.5"), date(2024, 1, 1), None, True, 1.0)}
    assert key_mask(rows, columns, wanted).to_pylist() == [True, False]
    second = {
        (datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC), Decimal(2), date(2024, 1, 2), "", False, 2.5)
    }
    assert key_mask(rows, columns, second).to_pylist() == [False, True]
    assert key_text(rows, columns)[0] != key_text(rows, columns)[1]
