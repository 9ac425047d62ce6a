"""Spark session on the shared Iceberg catalog.

The session is created on first use, once per run, from the same catalog
translation as pyiceberg (``lakehouse.catalog_config.spark_conf``), and stopped when
the run ends. Locally Spark runs in-process (``local[*]``) with the jars
``lakehouse prepare`` builds; in production ``spark_remote`` (a Spark Connect URL) or
``spark_master`` points at a cluster.

dagster-pyspark's ``PySparkResource`` takes its conf when the definitions are built
and never stops the session; this resource reads the settings when the run starts
(environment decided at run time) and owns the session's life.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from lakehouse.catalog_config import spark_conf
from lakehouse.settings import LakehouseSettings, get_settings
from lakehouse.spark.jars import SparkJars, SparkJarsMissing, spark_jars

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Confs a Spark Connect client may not set: the server was started with them.
_STATIC_PREFIXES = ("spark.jars", "spark.driver.", "spark.master", "spark.sql.extensions")
# Client mode on Kubernetes: the driver is the pod this process runs in. Executors call it
# back at the pod's IP, and naming the pod makes it the owner of the executor pods, so
# Kubernetes deletes them with it (a killed step pod leaves no executors running). Both come
# from the downward API: the `spark` profile (lakehouse/orchestration/k8s.py) sets them.
CLIENT_MODE_ENV = {"POD_IP": "spark.driver.host", "POD_NAME": "spark.kubernetes.driver.pod.name"}


class SparkClientModeError(RuntimeError):
    """A k8s:// master without the pod identity client mode needs; the message says what."""


def client_mode_conf(master: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The driver's address and pod name under a ``k8s://`` master; nothing otherwise."""
    if not master.startswith("k8s://"):
        return {}
    environ = dict(os.environ) if environ is None else environ
    return {key: environ[var] for var, key in CLIENT_MODE_ENV.items() if environ.get(var)}


def session_conf(
    settings: LakehouseSettings, master: str | None = None, jars: SparkJars | None = None
) -> dict[str, str]:
    """Conf of an in-process or master-URL session: catalog, jars, memory, UTC, logging.

    ``jars`` defaults to the checked jar cache (``SparkJarsMissing`` says what is absent).
    """
    jars = spark_jars(settings) if jars is None else jars
    master = master or settings.spark_master
    conf = {
        "spark.master": master,
        "spark.app.name": "lakehouse",
        "spark.driver.memory": settings.spark_driver_memory,
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        **spark_conf(settings),
        **client_mode_conf(master),
    }
    # from the jar cache; an image with the complete runtime on pyspark's classpath needs none
    if jars.jars:
        conf["spark.jars"] = ",".join(str(p) for p in jars.jars)
    if jars.driver_classpath:
        conf["spark.driver.extraClassPath"] = ":".join(str(p) for p in jars.driver_classpath)
    if jars.log4j2_config is not None:
        conf["spark.driver.extraJavaOptions"] = (
            f"-Dlog4j2.configurationFile=file:{jars.log4j2_config}"
        )
    return conf


def remote_conf(settings: LakehouseSettings) -> dict[str, str]:
    """What a Spark Connect client sets per session; the cluster carries jars and extensions."""
    conf = {
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        **spark_conf(settings),
    }
    return {k: v for k, v in conf.items() if not k.startswith(_STATIC_PREFIXES)}


def prepare_driver_environment(conf: dict[str, str]) -> None:
    """Environment pyspark reads when it launches the JVM (not settable through conf)."""
    # Python workers (mapInArrow) must import this project: this interpreter, not PATH's
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if conf.get("spark.master", "").startswith("local"):
        # in-process Spark binds to loopback (and does not warn about the hostname)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


class SparkResource(dg.ConfigurableResource):
    """One Spark session per run on the lakehouse catalog; stopped when the run ends.

    When a SparkContext is already running in this process (a test suite, a
    notebook), the run gets an isolated ``newSession()`` on it, configured for the
    run's catalog, and leaves the context running for its owner.
    """

    master: str | None = None
    remote: str | None = None
    extra_conf: dict[str, str] = {}

    _session: SparkSession | None = PrivateAttr(default=None)
    _owned: bool = PrivateAttr(default=False)
    _start_seconds: float | None = PrivateAttr(default=None)

    def conf(self, jars: SparkJars | None = None) -> dict[str, str]:
        """The session's conf; without the jar cache, its entries are left out (the
        session itself refuses to start without them)."""
        settings = get_settings()
        if self.remote or settings.spark_remote:
            return {**remote_conf(settings), **self.extra_conf}
        if jars is None:
            try:
                jars = spark_jars(settings)
            except SparkJarsMissing:
                jars = SparkJars((), (), None)
        return {**session_conf(settings, self.master, jars), **self.extra_conf}

    @property
    def start_seconds(self) -> float | None:
        """How long getting the session took in this run (JVM start when it owns it)."""
        return self._start_seconds

    def session(self) -> SparkSession:
        if self._session is None:
            began = time.monotonic()
            self._session, self._owned = self._create()
            self._start_seconds = time.monotonic() - began
        return self._session

    def _create(self) -> tuple[SparkSession, bool]:
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        settings = get_settings()
        remote = self.remote or settings.spark_remote
        # a local or master-URL session checks its jars first: the error names what is missing
        conf = self.conf() if remote else self.conf(spark_jars(settings))
        if remote:
            builder = SparkSession.builder.remote(remote)
            for key, value in conf.items():
                builder = builder.config(key, value)
            return builder.getOrCreate(), True
        active = SparkContext._active_spark_context
        if active is not None:
            shared = SparkSession.builder.getOrCreate().newSession()
            for key, value in conf.items():
                if key.startswith("spark.sql.") and not key.startswith(_STATIC_PREFIXES):
                    shared.conf.set(key, value)
            return shared, False
        if conf["spark.master"].startswith("k8s://"):
            absent = [k for k in CLIENT_MODE_ENV.values() if k not in conf]
            if absent:
                raise SparkClientModeError(
                    f"a k8s:// master needs {' and '.join(absent)}: run the step with the "
                    "`spark` profile (k8s_tags('spark')), which sets POD_IP and POD_NAME"
                )
        prepare_driver_environment(conf)
        builder = SparkSession.builder
        for key, value in conf.items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("WARN")
        return session, True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None and self._owned:
            self._session.stop()
        self._session = None
        self._owned = False
