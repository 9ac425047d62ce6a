"""The Iceberg catalog every pyiceberg asset writes through."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from lakehouse.catalog_config import pyiceberg_properties
from lakehouse.settings import LakehouseSettings, get_settings

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


class IcebergCatalogResource(dg.ConfigurableResource):
    """pyiceberg SQL catalog; name, URI and warehouse default to the settings."""

    catalog_name: str | None = None
    uri: str | None = None
    warehouse: str | None = None

    def settings(self) -> LakehouseSettings:
        overrides = {
            k: v
            for k, v in {
                "catalog_name": self.catalog_name,
                "catalog_uri": self.uri,
                "warehouse": self.warehouse,
            }.items()
            if v is not None
        }
        return get_settings().model_copy(update=overrides)

    def load(self) -> Catalog:
        from pyiceberg.catalog import load_catalog

        settings = self.settings()
        return load_catalog(settings.catalog_name, **pyiceberg_properties(settings))
