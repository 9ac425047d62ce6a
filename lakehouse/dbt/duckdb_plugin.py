"""dbt-duckdb plugin: gold models read and write Iceberg tables of the shared catalog.

dbt-duckdb's own ``iceberg`` plugin only reads. Here every table of the exposed
namespaces becomes a DuckDB view over ``iceberg_scan(<current metadata>)`` when a
connection opens, and ``store()`` commits each ``external`` model's Parquet output
to ``<schema>.<model>`` with pyiceberg: a full overwrite, one snapshot per model
run, additive schema changes allowed. The DuckDB Iceberg and Avro extensions are
loaded from their PyPI wheels (DuckDB's ``INSTALL`` needs the internet).
"""

from __future__ import annotations

import atexit
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.duckdb.utils import TargetConfig
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.expressions import AlwaysTrue, And, GreaterThanOrEqual, LessThan

from lakehouse.catalog_config import pyiceberg_properties
from lakehouse.dbt.scratch import remove_stale
from lakehouse.settings import get_settings
from lakehouse.tables.commits import (
    TABLE_PROPERTIES,
    conform,
    quiet_empty_deletes,
    transaction,
    with_commit_retries,
)

DBT_MODEL_KEY = "lakehouse.dbt-model"
WINDOW_KEY = "lakehouse.dbt-window"


def duckdb_extension_paths() -> list[Path]:
    """The Avro and Iceberg extension binaries shipped in the duckdb-extension-* wheels."""
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    paths = []
    for module in (duckdb_extension_avro, duckdb_extension_iceberg):
        found = sorted(Path(module.__file__).parent.glob("extensions/*/*.duckdb_extension"))
        if not found:
            raise RuntimeError(f"{module.__name__} ships no DuckDB extension binary")
        paths.append(found[-1])
    return paths


def load_iceberg_extension(conn) -> None:
    for path in duckdb_extension_paths():
        conn.execute(f"LOAD '{path}'")


def expose_tables(conn, catalog: Catalog, namespaces: list[str]) -> list[str]:
    """Create ``<namespace>.<table>`` views over the tables' current metadata files."""
    exposed = []
    for namespace in namespaces:
        conn.execute(f'create schema if not exists "{namespace}"')
        if not catalog.namespace_exists(namespace):
            continue
        for identifier in catalog.list_tables(namespace):
            name = identifier[-1]
            table = catalog.load_table(identifier)
            if table.current_snapshot() is None:
                continue
            location = table.metadata_location.replace("'", "''")
            conn.execute(
                f'create or replace view "{namespace}"."{name}" as '
                f"select * from iceberg_scan('{location}')"
            )
            exposed.append(f"{namespace}.{name}")
    return exposed


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self._namespaces = list(plugin_config.get("expose_namespaces", ["silver", "gold"]))
        settings = get_settings()
        self._catalog = load_catalog(settings.catalog_name, **pyiceberg_properties(settings))

    def configure_connection(self, conn) -> None:
        root = getattr(self.creds, "external_root", None)
        if root:
            staging_directory(Path(root))
        load_iceberg_extension(conn)
        expose_tables(conn, self._catalog, self._namespaces)

    def store(self, target_config: TargetConfig) -> None:
        """Commit the model's result: a full overwrite, or only its window of partitions.

        A model may declare ``iceberg_partition`` (a date column: identity partitions)
        and, for an incremental build, ``iceberg_window`` ({column, start, end}, end
        exclusive): then only the rows of that window are replaced, in one snapshot,
        and older partitions stay untouched.
        """
        if target_config.location is None:
            raise ValueError("the iceberg plugin stores 'external' models only")
        config = target_config.config
        data = _drop_empty_marker(pq.read_table(target_config.location.path))
        relation = target_config.relation
        identifier = f"{relation.schema}.{relation.identifier}"
        self._catalog.create_namespace_if_not_exists(relation.schema)
        table = self._catalog.create_table_if_not_exists(
            identifier, schema=data.schema, properties=TABLE_PROPERTIES
        )
        with table.update_schema() as update:
            update.union_by_name(data.schema)
        partition = config.get("iceberg_partition")
        if partition and table.spec().is_unpartitioned():
            with table.update_spec() as spec:
                spec.add_identity(partition)
        properties = {DBT_MODEL_KEY: relation.identifier}
        window = config.get("iceberg_window")
        if window:
            start, end = window["start"], window["end"]
            properties[WINDOW_KEY] = f"{window['column']}:[{start},{end})"
            column = window["column"]
            where = And(GreaterThanOrEqual(column, start), LessThan(column, end))
        else:
            where = AlwaysTrue()

        def commit() -> None:
            # tried once per load (commit.retry.num-retries=0); a commit that lands
            # meanwhile (the maintenance job's compaction) makes it reload and write again:
            # the same rows over the same filter, so a retry cannot duplicate them
            table = self._catalog.load_table(identifier)
            rows = conform(data, table.schema().as_arrow())
            with transaction(table) as tx, quiet_empty_deletes():
                tx.overwrite(rows, overwrite_filter=where, snapshot_properties=properties)

        with_commit_retries(commit)


def staging_directory(root: Path) -> Path:
    """This invocation's scratch directory for external models (see macros/external_location.sql).

    DuckDB's COPY does not create directories, so it is made here, when the connection
    opens; it is removed when dbt exits, and directories a killed dbt left behind are
    removed after a day (``lakehouse.dbt.scratch``).
    """
    from dbt_common.invocation import get_invocation_id

    directory = root / get_invocation_id()
    if directory.exists():
        return directory
    directory.mkdir(parents=True)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    remove_stale(root)  # the new directory is not stale
    return directory


def _drop_empty_marker(data: pa.Table) -> pa.Table:
    """dbt-duckdb writes one all-NULL row for an empty result; an empty model stays empty."""
    if data.num_rows == 1 and all(pc.all(pc.is_null(col)).as_py() for col in data.columns):
        return data.slice(0, 0)
    return data
