"""lakehouse: a Dagster asset-based medallion lakehouse on Apache Iceberg."""
