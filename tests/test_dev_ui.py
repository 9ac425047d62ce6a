"""`lakehouse dev` as a user runs it: the UI answers, shows the layer groups, and stopping
it (SIGTERM, as from a closed terminal or `kill`) leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lakehouse.stack.services import free_port

GROUPS_QUERY = """
{ assetNodes { assetKey { path } groupName } }
"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            child = int(stat.parent.name)
            found |= {child} | _descendants(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.timeout(400)
def test_dev_serves_the_ui_with_layer_groups_and_stops_cleanly(tmp_path, dbt_manifest):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "DAGSTER_"))}
    env.update(
        LAKEHOUSE_STATE_DIR=str(tmp_path / "state"),
        LAKEHOUSE_KAFKA_PORT=str(free_port()),
        LAKEHOUSE_S3_PORT=str(free_port()),
    )
    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen(
        [sys.executable, "-m", "lakehouse.cli", "dev", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        nodes = None
        while time.monotonic() < deadline and dev.poll() is None:
            try:
                nodes = _graphql(port, GROUPS_QUERY)["assetNodes"]
                if nodes:
                    break
            except OSError:
                pass
            time.sleep(2)
        assert nodes, (tmp_path / "dev.log").read_text()[-3000:]
        groups = {node["groupName"] for node in nodes}
        assert {"bronze", "silver", "gold", "quarantine"} <= groups
        keys = {"/".join(node["assetKey"]["path"]) for node in nodes}
        assert {"bronze/clickstream", "silver/page_views", "gold/daily_page_views"} <= keys
        family = _descendants(dev.pid)
        assert len(family) >= 4  # services, dagster dev, webserver, daemon, code server
    finally:
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=120)
        log.close()
    time.sleep(1)
    output = (tmp_path / "dev.log").read_text()
    assert not [pid for pid in family if _alive(pid)], output[-3000:]
    # `dg dev`, not the superseded `dagster dev`, which warns on every start
    assert "SupersessionWarning" not in output, output[-3000:]
