"""`lakehouse up/status/down` as a user runs them: real processes, nothing left behind."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.stack.services import free_port

LAKEHOUSE = [sys.executable, "-m", "lakehouse.cli"]


def _cli(args, env) -> subprocess.CompletedProcess:
    return subprocess.run(LAKEHOUSE + args, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKEHOUSE_")}
    env.update(
        LAKEHOUSE_STATE_DIR=str(tmp_path / "state"),
        LAKEHOUSE_KAFKA_PORT=str(free_port()),
        LAKEHOUSE_S3_PORT=str(free_port()),
    )
    return env


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_up_status_down_leaves_no_process_behind(cli_env, tmp_path):
    up = _cli(["up"], cli_env)
    assert up.returncode == 0, up.stderr
    pids = [int(p.read_text()) for p in (tmp_path / "state" / "run").glob("*.pid")]
    assert len(pids) == 2 and all(_alive(p) for p in pids)

    again = _cli(["up"], cli_env)  # idempotent
    assert again.returncode == 0 and "already running" in again.stdout

    status = _cli(["status"], cli_env)
    assert status.stdout.count("running (pid") == 2, status.stdout

    down = _cli(["down"], cli_env)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p) for p in pids)
    assert _cli(["status"], cli_env).stdout.count("stopped") == 2


def test_a_taken_port_is_reported_with_the_setting_to_change(cli_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(cli_env["LAKEHOUSE_KAFKA_PORT"])))
        squatter.listen()
        result = _cli(["up"], cli_env)
    assert result.returncode == 1
    assert "is taken by another process" in result.stderr
    assert "LAKEHOUSE_KAFKA_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_restarted_stack_gets_the_demo_data_back_at_the_same_offsets(cli_env):
    """The broker keeps data in memory; bronze's offsets must stay valid after `up`."""
    from kafka import KafkaConsumer, TopicPartition

    cli_env["LAKEHOUSE_POSTGRES_DSN"] = f"postgresql://postgres@127.0.0.1:{free_port()}/shop"
    demo = _cli(["demo", "--no-run"], cli_env)
    assert demo.returncode == 0, demo.stderr
    assert "stopped kafka" in demo.stdout
    produced = re.search(r"(\d+) events and (\d+) change events", demo.stdout)
    events, changes = int(produced[1]), int(produced[2])

    up = _cli(["up"], cli_env)
    try:
        assert up.returncode == 0, up.stderr
        assert "restored the demo data on the fresh kafka and s3" in up.stdout, up.stdout
        assert f"{events} events, {changes} change events" in up.stdout, up.stdout
        consumer = KafkaConsumer(
            bootstrap_servers=f"127.0.0.1:{cli_env['LAKEHOUSE_KAFKA_PORT']}",
            enable_auto_commit=False,
            consumer_timeout_ms=3000,
        )
        partitions = [TopicPartition("events.clickstream", p) for p in range(3)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        offsets = [(m.partition, m.offset) for m in consumer]
        consumer.close()
        assert len(offsets) == events
        for p in range(3):  # the same dense offsets as the first publish: 0..n-1
            mine = sorted(o for q, o in offsets if q == p)
            assert mine == list(range(len(mine)))
        again = _cli(["up"], cli_env)  # already running: nothing republished
        assert "restored" not in again.stdout
    finally:
        _cli(["down"], cli_env)


def test_ctrl_c_while_the_stack_starts_leaves_nothing_running(cli_env, tmp_path):
    """Interrupted right after its first service came up, `up` stops what it started
    (including a service still starting), so no port stays taken and no pid is left."""
    import signal
    import time

    from lakehouse.stack.services import port_in_use

    process = subprocess.Popen(
        [*LAKEHOUSE, "up"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = process.stdout.readline()
    assert "started" in first, first
    process.send_signal(signal.SIGINT)
    output = first + process.communicate(timeout=120)[0]
    assert process.returncode != 0, output
    assert not list((tmp_path / "state" / "run").glob("*.pid")), output
    ports = (int(cli_env["LAKEHOUSE_KAFKA_PORT"]), int(cli_env["LAKEHOUSE_S3_PORT"]))
    deadline = time.monotonic() + 10
    while any(port_in_use(p) for p in ports) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(port_in_use(p) for p in ports), output
