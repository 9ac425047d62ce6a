"""The one translation from catalog settings to each engine's configuration.

pyiceberg, Spark, the dbt profile and Trino must agree on the catalog *name*
(it is a column in the SQL catalog's tables), its URI and its warehouse, or they
silently see different tables. Every engine's config is derived here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lakehouse.settings import LakehouseSettings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

NAMESPACES = ("bronze", "silver", "gold", "quarantine")


def pyiceberg_properties(settings: LakehouseSettings) -> dict[str, str]:
    """Properties for ``pyiceberg.catalog.load_catalog(settings.catalog_name, **props)``."""
    props = {
        "type": "sql",
        "uri": _sqlalchemy_uri(settings),
        "warehouse": settings.resolved_warehouse,
        # created by pyiceberg first, so Spark never needs to (see spark_conf)
        "init_catalog_tables": "true",
    }
    if settings.resolved_warehouse.startswith("s3://"):
        props.update(
            {
                "s3.endpoint": settings.resolved_s3_endpoint,
                "s3.region": settings.s3_region,
                "s3.access-key-id": settings.s3_access_key_id,
                "s3.secret-access-key": settings.s3_secret_access_key.get_secret_value(),
                "s3.path-style-access": "true",
            }
        )
    return props


def jdbc_url(settings: LakehouseSettings) -> str:
    """The catalog's SQLAlchemy URL as a JDBC URL (Spark's JdbcCatalog, Trino)."""
    url = _url(_sqlalchemy_uri(settings))
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"jdbc:sqlite:{url.database}"
    if backend == "postgresql":
        port = f":{url.port}" if url.port else ""
        return f"jdbc:postgresql://{url.host}{port}/{url.database}"
    raise ValueError(f"no JDBC mapping for catalog backend {backend!r}")


def spark_conf(settings: LakehouseSettings) -> dict[str, str]:
    """Spark session conf that mounts the same catalog under the same name."""
    prefix = f"spark.sql.catalog.{settings.catalog_name}"
    url = _url(_sqlalchemy_uri(settings))
    conf = {
        "spark.sql.extensions": (
            "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
        ),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.defaultCatalog": settings.catalog_name,
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{prefix}.uri": jdbc_url(settings),
        f"{prefix}.warehouse": settings.resolved_warehouse,
        # pyiceberg creates the catalog tables; Spark creating them keeps a SQLite
        # read lock for the JVM's lifetime and every pyiceberg commit then fails.
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.jdbc.init-catalog-tables": "false",
        # Spark's catalog cache serves metadata up to 30 s stale to a shared catalog.
        f"{prefix}.cache-enabled": "false",
    }
    if url.username:
        conf[f"{prefix}.jdbc.user"] = url.username
    if url.password:
        conf[f"{prefix}.jdbc.password"] = str(url.password)
    if settings.resolved_warehouse.startswith("s3://"):
        conf.update(
            {
                f"{prefix}.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                f"{prefix}.s3.endpoint": settings.resolved_s3_endpoint,
                f"{prefix}.s3.path-style-access": "true",
                # S3FileIO travels to the executors with these properties: the region here
                # reaches every JVM, where an environment variable would reach only the
                # pods someone remembered to give it (the client-mode driver had none)
                f"{prefix}.client.region": settings.s3_region,
            }
        )
    return conf


def trino_catalog_properties(settings: LakehouseSettings) -> dict[str, str]:
    """Trino Iceberg connector properties for the production JDBC catalog.

    The password is written as Trino's ``${ENV:...}`` reference: it stays a secret
    of the Trino pod, never a value in a file.
    """
    url = _url(_sqlalchemy_uri(settings))
    props = {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.catalog-name": settings.catalog_name,
        "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
        "iceberg.jdbc-catalog.connection-url": jdbc_url(settings),
        "iceberg.jdbc-catalog.default-warehouse-dir": settings.resolved_warehouse,
        "iceberg.jdbc-catalog.connection-password": "${ENV:LAKEHOUSE_CATALOG_PASSWORD}",
    }
    if url.username:
        props["iceberg.jdbc-catalog.connection-user"] = url.username
    if settings.resolved_warehouse.startswith("s3://"):
        props.update(
            {
                "fs.native-s3.enabled": "true",
                "s3.endpoint": settings.resolved_s3_endpoint,
                "s3.region": settings.s3_region,
                "s3.path-style-access": "true",
                # like the catalog password: references to the Trino pod's environment
                "s3.aws-access-key": "${ENV:LAKEHOUSE_S3_ACCESS_KEY_ID}",
                "s3.aws-secret-key": "${ENV:LAKEHOUSE_S3_SECRET_ACCESS_KEY}",
            }
        )
    return props


def dbt_env(settings: LakehouseSettings) -> dict[str, str]:
    """Environment read by ``dbt_project/profiles.yml`` (dbt profiles only see env vars)."""
    return {
        "LAKEHOUSE_DBT_TARGET": settings.dbt_target,
        "LAKEHOUSE_CATALOG_NAME": settings.catalog_name,
        "LAKEHOUSE_TRINO_HOST": settings.trino_host,
        "LAKEHOUSE_TRINO_PORT": str(settings.trino_port),
        "LAKEHOUSE_TRINO_USER": settings.trino_user,
    }


def _sqlalchemy_uri(settings: LakehouseSettings) -> str:
    uri = settings.resolved_catalog_uri
    parts = urlsplit(uri)
    if parts.scheme in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy's bare default is psycopg2.
        uri = "postgresql+psycopg" + uri[len(parts.scheme) :]
    if settings.catalog_user or settings.catalog_password:
        url = _url(uri)
        url = url.set(
            username=settings.catalog_user or url.username,
            password=(
                settings.catalog_password.get_secret_value()
                if settings.catalog_password
                else url.password
            ),
        )
        uri = url.render_as_string(hide_password=False)
    return uri


def _url(uri: str) -> URL:
    """SQLAlchemy's URL parser, imported on use: sqlalchemy costs ~0.4 s to import, and
    the code location imports this module (through its resources) at load."""
    from sqlalchemy.engine import make_url

    return make_url(uri)
