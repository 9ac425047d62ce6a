"""S3 / MinIO client for the landing bucket."""

from __future__ import annotations

import dagster as dg

from lakehouse.settings import get_settings


class S3Resource(dg.ConfigurableResource):
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None  # pass dg.EnvVar(...) in production

    def client(self):
        import boto3
        from botocore.config import Config

        settings = get_settings()
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url or settings.resolved_s3_endpoint,
            region_name=self.region or settings.s3_region,
            aws_access_key_id=self.access_key_id or settings.s3_access_key_id,
            aws_secret_access_key=(
                self.secret_access_key or settings.s3_secret_access_key.get_secret_value()
            ),
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
