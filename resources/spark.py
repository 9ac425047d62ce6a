"""Spark session on the shared Iceberg catalog.

The session is created lazily, once per run, from the same catalog translation as
pyiceberg (``lakehouse.catalog_config.spark_conf``), and stopped when the run ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import PrivateAttr

from lakehouse.catalog_config import spark_conf
from lakehouse.settings import get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkResource(dg.ConfigurableResource):
    master: str | None = None
    extra_conf: dict[str, str] = {}

    _session: SparkSession | None = PrivateAttr(default=None)

    def conf(self) -> dict[str, str]:
        settings = get_settings()
        return {
            "spark.master": self.master or settings.spark_master,
            "spark.driver.memory": settings.spark_driver_memory,
            "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
            "spark.ui.enabled": "false",
            **spark_conf(settings),
            **self.extra_conf,
        }

    def session(self) -> SparkSession:
        if self._session is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder.appName("lakehouse")
            for key, value in self.conf().items():
                builder = builder.config(key, value)
            self._session = builder.getOrCreate()
        return self._session

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._session is not None:
            self._session.stop()
            self._session = None
