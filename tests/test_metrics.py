"""`lakehouse metrics`: /metrics scraped over HTTP against the real stack (Tansu, moto,
Iceberg), each metric family present with the values the data implies; computed once
per cache period, however often it is scraped."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from lakehouse.declarations.sources import sources
from lakehouse.ingest.kafka.reader import ingest_kafka_batch, read_committed_offsets
from lakehouse.ingest.landing.reader import ingest_files, ingested_files, list_new_files
from lakehouse.metrics import FAMILIES, serve
from lakehouse.stack.services import free_port
from lakehouse.tables.run_history import record_run
from resources.iceberg import IcebergCatalogResource
from resources.kafka import KafkaResource
from resources.s3 import S3Resource

CLICKSTREAM = sources().kafka_source("clickstream")
MARKETING_SPEND = sources().landing_source("marketing_spend")


def _scrape(url: str) -> tuple[dict[str, dict[tuple, float]], float]:
    began = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as response:
        text = response.read().decode()
    seconds = time.monotonic() - began
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {tuple(sorted(s.labels.items())): s.value for s in family.samples}
    return families, seconds


def test_metrics_are_served_with_plausible_values(lakehouse_env):
    settings = lakehouse_env
    catalog = IcebergCatalogResource().load()
    topic = CLICKSTREAM.resolved_topic(settings.kafka_topic_prefix)
    producer = KafkaResource().producer()
    for i in range(30):
        event = {"event_id": f"e-{i}", "event_type": "view", "user_id": "u", "ts": "2026-11-01"}
        producer.send(topic, key=b"k%d" % (i % 3), value=json.dumps(event).encode())
    producer.send(topic, key=b"k0", value=b"{broken")
    producer.flush()
    producer.close()
    ingest_kafka_batch(catalog, KafkaResource(), CLICKSTREAM, topic, "r", max_records=25)
    behind = 31 - sum(read_committed_offsets(catalog, CLICKSTREAM, topic).values())
    assert behind > 0
    s3 = S3Resource().client()
    for n in range(3):
        body = "spend_date,channel,campaign,spend,currency\n2026-11-01,email,c,x,EUR\n"
        s3.put_object(
            Bucket=settings.landing_bucket, Key=f"{MARKETING_SPEND.key_prefix}f{n}.csv", Body=body
        )
    keys = list_new_files(
        s3, settings.landing_bucket, MARKETING_SPEND, ingested_files(catalog, MARKETING_SPEND), 1
    )
    ingest_files(catalog, s3, settings.landing_bucket, MARKETING_SPEND, keys, "r")
    ended = datetime.now(UTC) - timedelta(minutes=5)
    run = {
        "run_id": "run-1",
        "job": "lakehouse",
        "status": "success",
        "started_at": ended - timedelta(seconds=42),
        "ended_at": ended,
        "duration_s": 42.0,
    }
    scored = {
        "job": "lakehouse",
        "asset_key": "silver/page_views",
        "materialized_at": ended,
        "quality_score": 0.97,
    }
    record_run(catalog, run, [scored], datetime.now(UTC))

    port = free_port()
    server, _ = serve("127.0.0.1", port, ttl_seconds=300)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        metrics, first = _scrape(url)
        _, second = _scrape(url)
    finally:
        server.shutdown()

    for name in FAMILIES:
        assert name in metrics, f"{name} is not served"
    assert all(v == 0 for v in metrics["lakehouse_metrics_errors"].values()), metrics[
        "lakehouse_metrics_errors"
    ]
    lag = {
        k: v
        for k, v in metrics["lakehouse_kafka_lag_records"].items()
        if ("source", "clickstream") in k
    }
    assert sum(lag.values()) == behind
    waiting = {dict(k)["source"]: v for k, v in metrics["lakehouse_landing_files_waiting"].items()}
    assert waiting["marketing_spend"] == 2
    assert metrics["lakehouse_runs"][(("job", "lakehouse"), ("status", "success"))] == 1
    assert (
        metrics["lakehouse_run_last_duration_seconds"][
            (("job", "lakehouse"), ("status", "success"))
        ]
        == 42
    )
    age = metrics["lakehouse_asset_seconds_since_materialization"][
        (("asset", "silver/page_views"),)
    ]
    assert 290 < age < 900
    assert metrics["lakehouse_quality_score"][(("asset", "silver/page_views"),)] == 0.97
    quarantined = {dict(k)["table"]: v for k, v in metrics["lakehouse_quarantined_rows"].items()}
    assert quarantined[CLICKSTREAM.quarantine_table] >= 0
    assert quarantined[MARKETING_SPEND.quarantine_table] == 1  # the bad spend row of f0
    files = {dict(k)["table"]: v for k, v in metrics["lakehouse_table_data_files"].items()}
    assert files[CLICKSTREAM.bronze_table] >= 1 and files["ops.pipeline_runs"] == 1
    snapshots = {dict(k)["table"]: v for k, v in metrics["lakehouse_table_snapshots"].items()}
    assert snapshots[CLICKSTREAM.bronze_table] >= 1
    compute = metrics["lakehouse_metrics_compute_seconds"][()]
    print(f"first scrape {first:.2f} s (computation {compute:.2f} s), cached scrape {second:.3f} s")
    assert second < first  # served from the cache


def test_every_dashboard_panel_queries_a_served_metric():
    import re
    from pathlib import Path

    dashboard = json.loads(Path("deploy/grafana/lakehouse.json").read_text())
    names = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(re.findall(r"\blakehouse_[a-z_]+\b", target["expr"]))
            assert used, f"{panel['title']}: queries no lakehouse metric"
            unknown = used - set(FAMILIES)
            assert not unknown, f"{panel['title']}: {unknown} are not served"
            names |= used
    assert names == set(FAMILIES)  # and every family is on the dashboard


def test_exporter_manifests_validate_and_agree():
    from pathlib import Path

    import kubernetes_validate
    import yaml

    docs = list(yaml.safe_load_all(Path("deploy/metrics/exporter.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "ServiceMonitor"}
    version = kubernetes_validate.utils.latest_version()
    for kind in ("Deployment", "Service"):
        kubernetes_validate.validate(kinds[kind], version, strict=True)
    deployment, service, monitor = kinds["Deployment"], kinds["Service"], kinds["ServiceMonitor"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # the image has no `lakehouse` script (it installs the dependencies, not the project)
    assert container["command"][:4] == ["python", "-m", "lakehouse.cli", "metrics"]
    assert "0.0.0.0" in container["command"] and "9108" in container["command"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
