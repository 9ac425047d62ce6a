"""Landing bucket -> bronze over moto's real S3 HTTP API: each file once, bad rows quarantined."""

from __future__ import annotations

from lakehouse.ingest.landing_files import ingest_files, ingested_files, list_new_files
from lakehouse.sources import LANDING_LAYOUTS, MARKETING_SPEND
from resources.iceberg import IcebergCatalogResource
from resources.s3 import S3Resource

HEADER = "spend_date,channel,campaign,spend,currency\n"
LAYOUT = LANDING_LAYOUTS[MARKETING_SPEND.name]


def test_files_are_ingested_once_and_bad_ones_quarantined(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    bucket = settings.landing_bucket
    s3.put_object(
        Bucket=bucket, Key="marketing_spend/a.csv", Body=HEADER + "2026-11-01,email,c1,1.5,EUR\n"
    )
    s3.put_object(Bucket=bucket, Key="marketing_spend/empty.csv", Body=b"")
    s3.put_object(Bucket=bucket, Key="marketing_spend/wrong_header.csv", Body="a,b\n1,2\n")
    s3.put_object(
        Bucket=bucket,
        Key="marketing_spend/mixed.csv",
        Body=HEADER + "2026-11-02,search,c2,3.0,EUR\n2026-11-02,search\n",
    )
    s3.put_object(Bucket=bucket, Key="other_source/x.csv", Body=HEADER)
    catalog = IcebergCatalogResource().load()

    keys = list_new_files(s3, bucket, MARKETING_SPEND, set(), limit=100)
    assert keys == [
        "marketing_spend/a.csv",
        "marketing_spend/empty.csv",
        "marketing_spend/mixed.csv",
        "marketing_spend/wrong_header.csv",
    ]
    batch = ingest_files(catalog, s3, bucket, MARKETING_SPEND, LAYOUT, keys, "run-1")
    assert batch.landed == 2
    assert sorted(batch.files_quarantined) == [
        "marketing_spend/empty.csv",
        "marketing_spend/wrong_header.csv",
    ]
    quarantine = catalog.load_table(MARKETING_SPEND.quarantine_table).scan().to_arrow().to_pylist()
    by_rule = {r["_rule"]: r for r in quarantine}
    assert set(by_rule) == {"empty_file", "header", "column_count"}
    assert by_rule["column_count"]["_row"] == 3
    assert by_rule["column_count"]["_file"] == f"s3://{bucket}/marketing_spend/mixed.csv"

    # the same keys again: nothing lands twice; the sensor's listing is empty
    again = ingest_files(catalog, s3, bucket, MARKETING_SPEND, LAYOUT, keys, "run-2")
    assert again.files == [] and again.landed == 0
    done = ingested_files(catalog, MARKETING_SPEND, LAYOUT)
    assert list_new_files(s3, bucket, MARKETING_SPEND, done, limit=100) == []
    assert catalog.load_table(MARKETING_SPEND.bronze_table).scan().to_arrow().num_rows == 2


def test_listing_pages_through_more_than_a_thousand_objects(lakehouse_env):
    settings = lakehouse_env
    s3 = S3Resource().client()
    for i in range(1005):
        s3.put_object(
            Bucket=settings.landing_bucket, Key=f"marketing_spend/f{i:05d}.csv", Body=HEADER
        )
    keys = list_new_files(
        s3, settings.landing_bucket, MARKETING_SPEND, {"marketing_spend/f00000.csv"}, 5000
    )
    assert len(keys) == 1004 and keys[0] == "marketing_spend/f00001.csv"
