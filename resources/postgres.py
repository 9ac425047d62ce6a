"""The OLTP database the incremental extraction reads."""

from __future__ import annotations

import dagster as dg

from lakehouse.settings import get_settings


class PostgresResource(dg.ConfigurableResource):
    dsn: str | None = None  # pass dg.EnvVar("LAKEHOUSE_POSTGRES_DSN") in production

    def conninfo(self) -> str:
        return self.dsn or get_settings().postgres_dsn
