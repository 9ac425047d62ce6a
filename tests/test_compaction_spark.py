"""The Spark path of compaction: the maintenance job hands a table above the Arrow
limit to Spark's rewrite_data_files and rewrite_manifests through the Spark resource
(a real local Spark session on the shared SQL catalog); the result is the same as the
Arrow path's: fewer files, the same rows, a replace snapshot, positions and silver's
build state read past it."""

from __future__ import annotations

import dagster as dg
from pyiceberg.table.snapshots import Operation

from lakehouse.defs.maintenance.jobs import iceberg_maintenance_job
from lakehouse.settings import LakehouseSettings
from lakehouse.spark.jars import build_spark_jars
from lakehouse.tables.commits import append_with_position, committed_position, ensure_table
from resources.iceberg import IcebergCatalogResource
from resources.spark import SparkResource
from tests.test_compaction import CLICKSTREAM, _batch, _sorted


def test_the_job_hands_a_large_table_to_spark(lakehouse_env, tmp_path, monkeypatch):
    jars = tmp_path / "spark-jars"
    build_spark_jars(LakehouseSettings(state_dir=tmp_path / "unused", spark_jars_dir=jars))
    monkeypatch.setenv("LAKEHOUSE_SPARK_JARS_DIR", str(jars))
    monkeypatch.setenv("LAKEHOUSE_SPARK_MASTER", "local[2]")
    catalog = IcebergCatalogResource().load()
    table = ensure_table(catalog, "bronze.spark_compaction_probe", CLICKSTREAM.layout)
    for n in range(24):
        append_with_position(table, _batch(n), "t", {"0": n + 1}, f"r{n}")
    rows = _sorted(table.scan().to_arrow())

    config = {"min_input_files": 5, "min_manifests": 16, "arrow_max_bytes": 0}
    result = iceberg_maintenance_job.execute_in_process(
        run_config={"ops": {"compact_tables": {"config": config}}},
        resources={"iceberg": IcebergCatalogResource(), "spark": SparkResource()},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (output,) = [
        e
        for e in result.all_node_events
        if e.step_key == "compact_tables" and e.is_successful_output
    ]
    report = output.event_specific_data.metadata["tables"].value["bronze.spark_compaction_probe"]
    assert report["engine"] == "spark"
    assert report["before"]["files"] == 24 and report["after"]["files"] == 3  # one per day
    assert report["manifests"]["before"] == 24 and report["manifests"]["after"] < 24

    table = catalog.load_table("bronze.spark_compaction_probe")
    # Spark's files read back as string where pyiceberg's read as large_string: values count
    assert _sorted(table.scan().to_arrow()).to_pylist() == rows.to_pylist()
    operations = [s.summary.operation for s in table.snapshots()]
    # the replace, then the expiry's position checkpoint (an empty append)
    assert operations[-2:] == [Operation.REPLACE, Operation.APPEND]
    assert committed_position(table, "t") == {"0": 24}
