"""`lakehouse provision` against the real local stack (Tansu, moto, a SQLite catalog).

Production runs the same command in a Job (deploy/k8s/provision-job.yaml) at install and
after every upgrade, so it must create what is missing, the warehouse bucket of an S3
warehouse included, and change nothing on a second run.
"""

from __future__ import annotations

import uuid

from typer.testing import CliRunner

from lakehouse.cli import app
from lakehouse.settings import get_settings
from lakehouse.stack.provision import required_buckets
from resources.s3 import S3Resource


def test_provision_creates_topics_buckets_namespaces_once(local_stack, tmp_path, monkeypatch):
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LAKEHOUSE_KAFKA_TOPIC_PREFIX", f"p{suffix}.")
    monkeypatch.setenv("LAKEHOUSE_LANDING_BUCKET", f"landing-{suffix}")
    monkeypatch.setenv("LAKEHOUSE_WAREHOUSE", f"s3://warehouse-{suffix}/lakehouse")
    settings = get_settings()
    assert required_buckets(settings) == [f"landing-{suffix}", f"warehouse-{suffix}"]

    runner = CliRunner()
    first = runner.invoke(app, ["provision"])
    assert first.exit_code == 0, first.output
    lines = dict(line.split(": ", 1) for line in first.output.splitlines())
    assert lines["buckets"] == f"landing-{suffix}, warehouse-{suffix}"
    assert all(topic.startswith(f"p{suffix}.") for topic in lines["topics"].split(", "))
    assert set(lines["namespaces"].split(", ")) == {"bronze", "silver", "gold", "quarantine"}
    buckets = {b["Name"] for b in S3Resource().client().list_buckets()["Buckets"]}
    assert {f"landing-{suffix}", f"warehouse-{suffix}"} <= buckets

    second = runner.invoke(app, ["provision"])
    assert second.exit_code == 0, second.output
    assert second.output.splitlines() == [
        "topics: all present",
        "buckets: all present",
        "namespaces: all present",
    ]


def test_a_local_warehouse_needs_only_the_landing_bucket(monkeypatch, tmp_path):
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("LAKEHOUSE_WAREHOUSE", raising=False)
    assert required_buckets(get_settings()) == [get_settings().landing_bucket]


def test_the_demo_refuses_another_scale_on_a_state_that_holds_one(tmp_path, monkeypatch):
    """Local topics restart empty and are published again at the state's scale: another
    scale's stream past the offsets bronze read would graft two shops' changelogs."""
    monkeypatch.setenv("LAKEHOUSE_STATE_DIR", str(tmp_path / "state"))
    marker = tmp_path / "state" / "demo.json"
    marker.parent.mkdir()
    marker.write_text('{"scale": 1}')
    result = CliRunner().invoke(app, ["demo", "--scale", "2"])
    assert result.exit_code == 2
    assert "holds the demo at scale 1, not 2" in result.output
    assert "make clean" in result.output
    assert marker.read_text() == '{"scale": 1}'  # nothing loaded
    assert sorted(p.name for p in marker.parent.iterdir()) == ["demo.json"]  # nothing started
