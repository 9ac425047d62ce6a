"""One settings object for every environment, read from ``LAKEHOUSE_*`` variables.

Resources, the CLI, the dbt plugin and the tests all ask this module, so a host,
port or path is decided in exactly one place and at run time, never at import.

A variable set to the empty string is unset: ``LAKEHOUSE_STATE_DIR=`` (what a copied
``.env.example`` or an emptied ``export`` leaves) means the default, not the current
directory, and an empty port is the default port rather than a validation error.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Environment(StrEnum):
    LOCAL = "local"
    CI = "ci"
    PROD = "prod"


class KafkaOffsetPolicy(StrEnum):
    """What ingestion does when the table's committed offset is outside the broker's log.

    ``fail`` stops the run and names topic, partition and offsets (the default: nothing
    is re-read or skipped without a person deciding). ``earliest`` restarts the
    partition from the broker's log start (use after a topic was deliberately
    recreated); ``latest`` skips to the broker's end (accepts a gap).
    """

    FAIL = "fail"
    EARLIEST = "earliest"
    LATEST = "latest"


class LakehouseSettings(BaseSettings):
    """Every knob of the lakehouse. Defaults describe the embedded local stack."""

    model_config = SettingsConfigDict(
        env_prefix="LAKEHOUSE_", env_file=None, extra="ignore", env_ignore_empty=True
    )

    env: Environment = Environment.LOCAL
    state_dir: Path = Field(
        default=PROJECT_ROOT / ".lakehouse",
        description="Where the local stack keeps catalog, warehouse, logs and Dagster storage.",
    )

    # Iceberg catalog (one configuration for pyiceberg, Spark, dbt and Trino)
    catalog_name: str = "lakehouse"
    catalog_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the SQL catalog; default: a SQLite file in state_dir.",
    )
    catalog_user: str | None = None
    catalog_password: SecretStr | None = None
    warehouse: str | None = Field(
        default=None, description="Warehouse location (file:// or s3://); default: state_dir."
    )

    # Kafka
    kafka_bootstrap_servers: str | None = None
    kafka_port: int = 19092
    kafka_topic_prefix: str = Field(
        default="", description="Prepended to every topic in sources.yml (e.g. 'staging.')."
    )
    kafka_topic_partitions: int = 3
    kafka_max_records_per_run: int = 500_000
    kafka_offset_policy: KafkaOffsetPolicy = KafkaOffsetPolicy.FAIL

    # Orchestration: offer the k8s executor (one pod per step under the K8sRunLauncher).
    # Read when the code location loads; without it dagster_k8s is never imported.
    k8s_executor: bool = Field(
        default=False,
        description="Offer the k8s executor (its execution config); the instance a run "
        "lands on still decides whether it runs steps in pods.",
    )

    # Daily partitions (Spark silver assets, daily gold models): the first day with data.
    # Fixed when the code location loads; earlier days are not offered for backfill.
    partitions_start: date = Field(
        default=date(2026, 11, 1), description="First day of the daily partitions (the demo's)."
    )

    # Iceberg maintenance (daily): snapshots older than this are expired, except the
    # newest few and the position checkpoint (lakehouse/tables/maintenance.py)
    snapshot_retention_hours: int = 168
    snapshots_keep_last: int = 5
    # files no snapshot references are deleted only once older than this: a run
    # writes its data files before it commits them
    orphan_file_min_age_hours: int = 72

    # S3 / MinIO
    s3_endpoint_url: str | None = None
    s3_port: int = 19000
    s3_region: str = "us-east-1"
    s3_access_key_id: str = "lakehouse"
    s3_secret_access_key: SecretStr = SecretStr("lakehouse-local-secret")
    landing_bucket: str = "landing"
    # a landing batch (one bronze run) takes files up to this many bytes (at least one
    # file). Ingestion streams each file a block at a time, so memory does not follow
    # it; it bounds a run's length and its quarantine rows, held until the commit. 1 GiB
    # of CSV runs in about 2 minutes within a 2 GB step pod.
    landing_batch_bytes: int = Field(default=1024**3, gt=0)

    # OLTP source (optional locally)
    postgres_dsn: str = "postgresql://postgres@127.0.0.1:5432/shop"

    # gold
    dbt_target: str = "local"
    trino_host: str = "trino"
    trino_port: int = 8443
    trino_user: str = "dagster"
    trino_password: SecretStr | None = Field(
        default=None,
        description="Trino's password for trino_user (password file authentication over "
        "HTTPS, dbt's `trino` target); only production talks to Trino.",
    )

    # PII masking on entry to silver (keyed hash and reversible tokens); required in prod
    pii_key: SecretStr | None = Field(
        default=None,
        description="Secret key for PII hashing/tokenizing; local and ci fall back to a dev key.",
    )

    # Spark
    spark_master: str = "local[*]"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 4
    spark_remote: str | None = Field(
        default=None,
        description="Spark Connect URL (sc://host:15002) of a cluster; wins over spark_master.",
    )
    spark_jars_dir: Path | None = Field(
        default=None, description="Cache of the Iceberg jars for Spark; default: state_dir."
    )
    spark_engine_min_changes: int = Field(
        default=500_000,
        description="A CDC silver build with engine auto runs on Spark from this many "
        "changes to read (the increment, or the whole changelog on a full rebuild).",
    )

    @cached_property
    def state_path(self) -> Path:
        return self.state_dir.expanduser().resolve()

    @property
    def catalog_db_path(self) -> Path:
        return self.state_path / "catalog.db"

    @property
    def resolved_catalog_uri(self) -> str:
        return self.catalog_uri or f"sqlite:///{self.catalog_db_path}"

    @property
    def resolved_warehouse(self) -> str:
        return self.warehouse or (self.state_path / "warehouse").as_uri()

    @property
    def resolved_kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.kafka_port}"

    @property
    def resolved_s3_endpoint(self) -> str:
        return self.s3_endpoint_url or f"http://127.0.0.1:{self.s3_port}"

    @property
    def dagster_home(self) -> Path:
        return self.state_path / "dagster"

    @property
    def run_dir(self) -> Path:
        return self.state_path / "run"

    @property
    def spark_jars_path(self) -> Path:
        if self.spark_jars_dir is not None:
            return self.spark_jars_dir.expanduser().resolve()
        return self.state_path / "spark-jars"

    @property
    def log_dir(self) -> Path:
        return self.state_path / "logs"


def get_settings() -> LakehouseSettings:
    """Read the settings now (not cached: tests and CLI change the environment)."""
    return LakehouseSettings()
