"""Alerts: exactly one webhook message per incident and one on recovery, never one per
tick, through a real HTTP receiver (http.server on loopback, in a thread); off locally
and in CI as deploy/environments.yaml declares."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from lakehouse.defs.bronze.sensors import BATCH_TAG, MAX_ATTEMPTS_PER_BATCH
from lakehouse.defs.ops.alerts import alerts_sensor
from resources.alerts import WEBHOOK_URL_VARIABLE, WebhookResource, alerts_config

STATE = {"fail_job": True, "check_passes": False}


@dg.asset(key=["silver", "alert_probe"])
def alert_probe() -> None:
    if STATE["fail_job"]:
        raise RuntimeError("Kafka broker unreachable")


@dg.asset_check(asset=alert_probe, blocking=True)
def rows_are_valid() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=STATE["check_passes"])


probe_job = dg.define_asset_job("alert_probe_job", selection=[alert_probe])
DEFS = dg.Definitions(assets=[alert_probe], asset_checks=[rows_are_valid], jobs=[probe_job])


class Receiver:
    """A Slack-like webhook endpoint: stores every JSON body it is sent."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.refuse = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.refuse:
                    self.send_response(503)
                else:
                    outer.messages.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/lakehouse"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [m["text"] for m in self.messages]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch):
    receiver = Receiver()
    monkeypatch.setenv(WEBHOOK_URL_VARIABLE, receiver.url)
    monkeypatch.setenv("LAKEHOUSE_ENV", "prod")  # the environment that alerts
    yield receiver
    receiver.close()


def _tick(instance, cursor: str | None) -> str | None:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        definitions=DEFS,
        resources={"alerts": WebhookResource()},
    )
    alerts_sensor(context)
    return context.cursor


def _run(instance) -> None:
    DEFS.resolve_job_def("alert_probe_job").execute_in_process(
        instance=instance, raise_on_error=False
    )


def test_one_message_per_incident_and_one_on_recovery(receiver):
    STATE.update(fail_job=True, check_passes=False)
    with dg.instance_for_test() as instance:
        _run(instance)
        cursor = _tick(instance, None)
        assert receiver.texts() == [":rotating_light: Run of job alert_probe_job failed"]
        body = receiver.messages[0]["blocks"][0]["text"]["text"]
        assert "RuntimeError: Kafka broker unreachable" in body
        assert "https://dagster.lakehouse.internal/runs/" in body

        _run(instance)  # failing again: the same incident, no new message
        for _ in range(3):
            cursor = _tick(instance, cursor)
        assert len(receiver.messages) == 1

        STATE["fail_job"] = False  # the asset builds, but its blocking check fails the run
        _run(instance)
        cursor = _tick(instance, cursor)
        assert receiver.texts()[1:] == [
            ":rotating_light: Blocking check rows_are_valid failed on silver/alert_probe"
        ]
        cursor = _tick(instance, cursor)
        assert len(receiver.messages) == 2

        # both recover; the webhook refuses at first: retried next tick, and only once
        STATE["check_passes"] = True
        _run(instance)
        receiver.refuse = True
        cursor = _tick(instance, cursor)
        receiver.refuse = False
        assert len(receiver.messages) == 2
        cursor = _tick(instance, cursor)
        cursor = _tick(instance, cursor)
        assert receiver.texts()[2:] == [
            ":white_check_mark: Recovered: Blocking check rows_are_valid passes again on "
            "silver/alert_probe",
            ":white_check_mark: Recovered: Job alert_probe_job runs again",
        ]
        assert json.loads(cursor) == {}


def test_a_sensor_that_gave_up_on_a_batch_is_one_incident(receiver):
    """Three runs of one batch ended without moving its position: the bronze sensors
    propose it no more; on-call hears it once, and once when batches flow again."""
    STATE.update(fail_job=True, check_passes=False)
    job = DEFS.resolve_job_def("alert_probe_job")
    with dg.instance_for_test() as instance:
        for _ in range(MAX_ATTEMPTS_PER_BATCH):
            job.execute_in_process(
                instance=instance, raise_on_error=False, tags={BATCH_TAG: "events:0=40"}
            )
        cursor = _tick(instance, _tick(instance, None))
        assert receiver.texts() == [
            ":rotating_light: The sensor of alert_probe_job stopped proposing batch events:0=40",
            ":rotating_light: Run of job alert_probe_job failed",
        ]
        STATE.update(fail_job=False, check_passes=True)
        job.execute_in_process(instance=instance, tags={BATCH_TAG: "events:0=41"})
        _tick(instance, _tick(instance, cursor))
        assert receiver.texts()[2:] == [
            ":white_check_mark: Recovered: The sensor of alert_probe_job proposes batches again",
            ":white_check_mark: Recovered: Job alert_probe_job runs again",
        ]


def test_local_and_ci_send_nothing(receiver, monkeypatch):
    STATE.update(fail_job=True, check_passes=False)
    for env in ("local", "ci"):
        monkeypatch.setenv("LAKEHOUSE_ENV", env)
        with dg.instance_for_test() as instance:
            _run(instance)
            assert _tick(instance, None) is None
    assert receiver.messages == []


def test_every_environment_declares_its_alerting():
    assert not alerts_config("local").enabled and not alerts_config("ci").enabled
    prod = alerts_config("prod")
    assert prod.enabled and prod.webhook_secret == "lakehouse-alerts"
    with pytest.raises(ValueError, match="declares no 'staging'"):
        alerts_config("staging")
