"""Reconciliation checks on real tables: bronze = silver + quarantined + deduplicated per
partition, CDC silver = the changelog applied again; a row lost afterwards fails them."""

from __future__ import annotations

import dagster as dg
import pytest
from pyiceberg.expressions import EqualTo

from lakehouse.demo.load import publish_cdc, publish_clickstream
from resources.iceberg import IcebergCatalogResource

PAGE_VIEWS = dg.AssetCheckKey(dg.AssetKey(["silver", "page_views"]), "page_views_reconcile")
CUSTOMERS = dg.AssetCheckKey(dg.AssetKey(["silver", "customers"]), "changelog_reconcile")
SELECTION = [
    dg.AssetKey(p)
    for p in (
        ["bronze", "clickstream"],
        ["quarantine", "clickstream"],
        ["silver", "page_views"],
        ["quarantine", "page_views"],
        ["bronze", "cdc_customers"],
        ["quarantine", "cdc_customers"],
        ["silver", "customers"],
        ["silver", "customers_history"],
        ["quarantine", "customers"],
    )
]


@pytest.mark.timeout(900)
def test_silver_reconciles_with_bronze_and_a_lost_row_fails_the_check(lakehouse_env, defs):
    publish_clickstream(lakehouse_env)
    publish_cdc(lakehouse_env)
    job = defs.resolve_job_def("lakehouse")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=SELECTION)
        assert result.success
        checks = {c.asset_check_key: c for c in result.get_asset_check_evaluations()}
        views = checks[PAGE_VIEWS]
        assert views.passed and views.metadata["lost_rows"].value == 0
        partitions = views.metadata["by_bronze_partition"].value
        assert partitions
        for counts in partitions.values():
            assert counts["bronze"] == counts["silver"] + counts.get("quarantined", 0) + counts.get(
                "deduplicated", 0
            )
        assert sum(c.get("deduplicated", 0) for c in partitions.values()) > 0
        assert sum(c.get("quarantined", 0) for c in partitions.values()) > 0
        assert checks[CUSTOMERS].passed

        # silver loses a row behind the pipeline's back: both checks notice
        catalog = IcebergCatalogResource().load()
        views_table = catalog.load_table("silver.page_views")
        victim = views_table.scan(limit=1).to_arrow()["event_id"][0].as_py()
        views_table.delete(EqualTo("event_id", victim))
        customers = catalog.load_table("silver.customers")
        customer = customers.scan(limit=1).to_arrow()["customer_id"][0].as_py()
        customers.delete(EqualTo("customer_id", customer))

        subset = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_check_selection={PAGE_VIEWS, CUSTOMERS}, asset_selection=set()
        )
        rerun = subset.execute_in_process(instance=instance, raise_on_error=False)
        after = {c.asset_check_key: c for c in rerun.get_asset_check_evaluations()}
        assert not after[PAGE_VIEWS].passed
        assert after[PAGE_VIEWS].metadata["lost_rows"].value == 1
        assert after[PAGE_VIEWS].metadata["lost_examples"].value[0]["event_id"] == victim
        assert not after[CUSTOMERS].passed
        assert after[CUSTOMERS].metadata["missing_or_stale"].value[0][0] == customer
