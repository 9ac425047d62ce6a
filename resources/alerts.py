"""A Slack-compatible incoming webhook, the one place that knows where alerts go.

The URL is a secret: it is read from the environment through ``dagster.EnvVar`` when a
message is sent, so an environment with alerts off (local, CI) needs no such variable,
and the URL never sits in config, run storage or the UI.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from lakehouse.settings import PROJECT_ROOT, get_settings

WEBHOOK_URL_VARIABLE = "LAKEHOUSE_ALERT_WEBHOOK_URL"
ENVIRONMENTS_FILE = PROJECT_ROOT / "deploy" / "environments.yaml"


@dataclass(frozen=True)
class AlertsConfig:
    """What ``deploy/environments.yaml``'s ``alerts`` block says for one environment."""

    enabled: bool
    ui_url: str
    webhook_secret: str | None = None  # the Kubernetes Secret holding the webhook URL


def alerts_config(env: str, path: Path = ENVIRONMENTS_FILE) -> AlertsConfig:
    """The alerting of ``env``; an environment the block does not name is an error (no
    environment may fall through to a default), and so is one that alerts with no secret."""
    block = yaml.safe_load(path.read_text()).get("alerts") or {}
    if env not in block:
        raise ValueError(f"{path.name}: `alerts:` declares no {env!r} environment")
    declared = block[env]
    secret = declared.get("webhook_url")
    secret_name = secret.get("secret") if isinstance(secret, dict) else None
    config = AlertsConfig(bool(declared["enabled"]), str(declared["ui_url"]), secret_name)
    if config.enabled and not config.webhook_secret:
        raise ValueError(f"{path.name}: alerts in {env!r} are on but name no webhook_url secret")
    return config


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept a message (unset URL, refused, non-2xx)."""


class WebhookResource(dg.ConfigurableResource):
    """Posts Slack-compatible JSON (``text`` plus ``blocks``) to the webhook."""

    url_variable: str = WEBHOOK_URL_VARIABLE
    timeout_seconds: float = 10.0

    def settings(self) -> AlertsConfig:
        """This environment's alerting, decided when asked (at tick time), not at import."""
        return alerts_config(get_settings().env.value)

    def post(self, payload: dict[str, Any]) -> None:
        url = dg.EnvVar(self.url_variable).get_value()
        if not url:
            raise AlertDeliveryError(f"{self.url_variable} is not set: nowhere to send alerts")
        request = urllib.request.Request(
            url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                status = response.status
        except OSError as exc:  # URLError, HTTPError, timeouts
            raise AlertDeliveryError(f"webhook refused the alert: {exc}") from exc
        if not 200 <= status < 300:
            raise AlertDeliveryError(f"webhook answered {status}")
