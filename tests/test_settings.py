"""Settings and the one catalog translation shared by every engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse.catalog_config import (
    jdbc_url,
    pyiceberg_properties,
    spark_conf,
    trino_catalog_properties,
)
from lakehouse.settings import PROJECT_ROOT, Environment, LakehouseSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(key)


def test_defaults_describe_the_embedded_local_stack():
    s = LakehouseSettings()
    assert s.env is Environment.LOCAL
    assert s.state_path == PROJECT_ROOT / ".lakehouse"
    assert s.resolved_catalog_uri == f"sqlite:///{PROJECT_ROOT / '.lakehouse' / 'catalog.db'}"
    assert s.resolved_warehouse == (PROJECT_ROOT / ".lakehouse" / "warehouse").as_uri()
    assert s.resolved_kafka_bootstrap == "127.0.0.1:19092"
    assert s.resolved_s3_endpoint == "http://127.0.0.1:19000"
    assert s.dagster_home == PROJECT_ROOT / ".lakehouse" / "dagster"


def test_settings_come_from_lakehouse_env_vars(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LAKEHOUSE_KAFKA_PORT", "29092")
    monkeypatch.setenv("LAKEHOUSE_S3_SECRET_ACCESS_KEY", "s3cr3t")
    s = LakehouseSettings()
    assert s.catalog_db_path == tmp_path / "catalog.db"
    assert s.resolved_kafka_bootstrap == "127.0.0.1:29092"
    assert s.s3_secret_access_key.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(s)  # secrets never reach logs through the settings


def test_an_empty_variable_means_unset(monkeypatch, tmp_path: Path):
    """``LAKEHOUSE_STATE_DIR=`` (a copied .env.example, an emptied export) is the default,
    not the current directory; an empty number is not a validation error."""
    monkeypatch.chdir(tmp_path)
    for name in ("STATE_DIR", "KAFKA_PORT", "SPARK_REMOTE", "CATALOG_URI", "ENV"):
        monkeypatch.setenv(f"LAKEHOUSE_{name}", "")
    s = LakehouseSettings()
    assert s.state_path == PROJECT_ROOT / ".lakehouse"
    assert s.kafka_port == 19092
    assert s.spark_remote is None
    assert s.resolved_catalog_uri.startswith(f"sqlite:///{PROJECT_ROOT}")
    assert s.env is Environment.LOCAL


def test_sqlite_catalog_is_the_same_catalog_for_pyiceberg_and_spark(tmp_path: Path):
    s = LakehouseSettings(state_dir=tmp_path, catalog_name="lh")
    props = pyiceberg_properties(s)
    conf = spark_conf(s)
    assert props["uri"] == f"sqlite:///{tmp_path}/catalog.db"
    assert conf["spark.sql.catalog.lh.uri"] == f"jdbc:sqlite:{tmp_path}/catalog.db"
    assert conf["spark.sql.catalog.lh.warehouse"] == props["warehouse"]
    assert conf["spark.sql.catalog.lh.catalog-impl"] == "org.apache.iceberg.jdbc.JdbcCatalog"
    # the rules that keep Spark from locking SQLite and from reading stale metadata
    assert conf["spark.sql.catalog.lh.jdbc.schema-version"] == "V1"
    assert conf["spark.sql.catalog.lh.jdbc.init-catalog-tables"] == "false"
    assert conf["spark.sql.catalog.lh.cache-enabled"] == "false"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_postgres_catalog_translates_for_every_engine():
    s = LakehouseSettings(
        catalog_uri="postgresql://iceberg@db.internal:5433/catalog",
        catalog_password="pw",
        warehouse="s3://warehouse/lakehouse",
        s3_endpoint_url="http://minio:9000",
    )
    props = pyiceberg_properties(s)
    assert props["uri"] == "postgresql+psycopg://iceberg:pw@db.internal:5433/catalog"
    assert props["s3.endpoint"] == "http://minio:9000"
    assert jdbc_url(s) == "jdbc:postgresql://db.internal:5433/catalog"
    conf = spark_conf(s)
    assert conf["spark.sql.catalog.lakehouse.jdbc.user"] == "iceberg"
    assert conf["spark.sql.catalog.lakehouse.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    # region and endpoint ride with S3FileIO to every executor (client mode sets no env there)
    assert conf["spark.sql.catalog.lakehouse.client.region"] == s.s3_region
    assert conf["spark.sql.catalog.lakehouse.s3.endpoint"] == "http://minio:9000"
    trino = trino_catalog_properties(s)
    assert trino["iceberg.catalog.type"] == "jdbc"
    assert trino["iceberg.jdbc-catalog.catalog-name"] == "lakehouse"
    assert trino["iceberg.jdbc-catalog.connection-url"] == jdbc_url(s)
    assert "pw" not in trino.values()  # the password stays a Trino-side secret reference


def test_unknown_catalog_backend_is_refused():
    with pytest.raises(ValueError, match="mysql"):
        jdbc_url(LakehouseSettings(catalog_uri="mysql://x@h/db"))


def test_every_setting_is_documented_in_env_example():
    documented = (PROJECT_ROOT / ".env.example").read_text()
    missing = [
        f"LAKEHOUSE_{name.upper()}"
        for name in LakehouseSettings.model_fields
        if f"LAKEHOUSE_{name.upper()}=" not in documented
    ]
    assert not missing, f"add to .env.example: {missing}"


def test_daily_partitions_start_where_the_settings_say(monkeypatch):
    from lakehouse.orchestration.partitions import daily_partitions

    assert daily_partitions().get_first_partition_key() == "2026-11-01"
    monkeypatch.setenv("LAKEHOUSE_PARTITIONS_START", "2025-01-15")
    partitions = daily_partitions()
    assert partitions.get_first_partition_key() == "2025-01-15"
    assert partitions.timezone == "UTC"
