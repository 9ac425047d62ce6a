"""Our commits go through ``commits.transaction``, which derives the staged table metadata
once per staged update instead of on every read. These tests fail if it ever serves
metadata older than what the transaction staged: a second operation in the same
transaction would then build on the wrong parent snapshot or lose rows."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa
from pyiceberg.expressions import EqualTo
from pyiceberg.table.snapshots import ancestors_of

from lakehouse.dbt.duckdb_plugin import load_iceberg_extension
from lakehouse.declarations.layouts import QUARANTINE
from lakehouse.ingest.records import QuarantineBuffer
from lakehouse.tables.commits import (
    append_with_position,
    committed_position,
    ensure_table,
    transaction,
)
from resources.iceberg import IcebergCatalogResource


def _rows(*names: str) -> pa.Table:
    rejects = QuarantineBuffer("probe", "r", datetime.now(UTC))
    for name in names:
        rejects.add("json", "not JSON", name, _file="s3://landing/probe.csv", _row=2)
    return rejects.to_arrow()


def _raw_values(metadata_location: str) -> list[str]:
    conn = duckdb.connect()
    load_iceberg_extension(conn)
    query = f"select _raw from iceberg_scan('{metadata_location}') order by _raw"
    return [raw for (raw,) in conn.execute(query).fetchall()]


def test_operations_staged_in_one_transaction_build_on_each_other(lakehouse_env):
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.commit_probe", QUARANTINE)
    for n in range(3):
        append_with_position(table, _rows(f"a{n}"), "probe", {"0": n}, "r")

    with transaction(table) as tx:
        tx.append(_rows("b0"), snapshot_properties={"probe": "first"})
        tx.append(_rows("b1", "b2"), snapshot_properties={"probe": "second"})

    ancestry = list(ancestors_of(table.current_snapshot(), table.metadata))
    assert len(ancestry) == 5  # each append's parent is the one before, none lost
    assert [s.sequence_number for s in ancestry] == [5, 4, 3, 2, 1]
    assert ancestry[0].summary["probe"] == "second" and ancestry[1].summary["probe"] == "first"
    assert ancestry[0].summary["total-records"] == "6"
    assert committed_position(table, "probe") == {"0": 2}
    # a second engine reads what the metadata says, from the catalog's current version
    reloaded = catalog.load_table("bronze.commit_probe")
    assert reloaded.metadata_location == table.metadata_location
    assert _raw_values(reloaded.metadata_location) == ["a0", "a1", "a2", "b0", "b1", "b2"]

    # a partial overwrite rewrites the file holding b1 and b2 without b1, then appends
    before = table.metadata
    with transaction(table) as tx:
        assert tx.table_metadata is before  # nothing staged: the table's own, not a copy
        tx.overwrite(_rows("b9"), overwrite_filter=EqualTo("_raw", "b1"))
    assert before.current_snapshot_id == ancestry[0].snapshot_id  # the old one untouched
    assert table.current_snapshot().summary["total-records"] == "6"
    assert _raw_values(table.metadata_location) == ["a0", "a1", "a2", "b0", "b2", "b9"]

    # an overwrite stages a delete and an append: the append must see the delete
    with transaction(table) as tx:
        tx.overwrite(_rows("c0"), snapshot_properties={"probe": "overwrite"})
    assert table.current_snapshot().summary["total-records"] == "1"
    assert _raw_values(table.metadata_location) == ["c0"]
