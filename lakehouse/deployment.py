"""Every setting declared for every environment, and the files rendered from them.

``deploy/environments.yaml`` says, for each ``LAKEHOUSE_*`` setting, what ``local``, ``ci``
and ``prod`` use: a literal, ``null`` (the settings default, which describes the local
stack; never allowed in prod, so production cannot fall through to a laptop value) or
``{secret: <Kubernetes Secret name>}`` (the value lives only in that Secret, under the
variable's own name, and reaches the pods through ``envFrom``).

From it this module renders what an operator applies: the ``lakehouse-env`` ConfigMap
and the Trino catalog file. Run ``python -m lakehouse.deployment --help``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lakehouse.catalog_config import trino_catalog_properties
from lakehouse.settings import PROJECT_ROOT, LakehouseSettings
from resources.alerts import WEBHOOK_URL_VARIABLE, alerts_config

DEPLOY_DIR = PROJECT_ROOT / "deploy"
ENVIRONMENTS_FILE = DEPLOY_DIR / "environments.yaml"
ENVIRONMENTS = ("local", "ci", "prod")
CONFIG_MAP_NAME = "lakehouse-env"
# what a Secret-backed setting holds when settings are built offline (tests, rendering)
SECRET_PLACEHOLDER = "<from-secret>"


@dataclass(frozen=True)
class SecretRef:
    """The setting's value is the key of the same name in this Kubernetes Secret."""

    secret: str


Declaration = str | SecretRef | None


def setting_variables() -> list[str]:
    """The environment variable of every field of ``LakehouseSettings``."""
    return [f"LAKEHOUSE_{name.upper()}" for name in LakehouseSettings.model_fields]


def load_declarations(path: Path = ENVIRONMENTS_FILE) -> dict[str, dict[str, Declaration]]:
    """``{variable: {environment: declaration}}`` as written in the file."""
    raw = yaml.safe_load(path.read_text())["settings"]
    return {
        variable: {env: _declaration(variable, env, value) for env, value in per_env.items()}
        for variable, per_env in raw.items()
    }


def missing_declarations(declarations: dict[str, dict[str, Declaration]]) -> list[str]:
    """One line per gap, saying exactly what to add where."""
    gaps = []
    for variable in setting_variables():
        per_env = declarations.get(variable)
        if per_env is None:
            gaps.append(
                f"{ENVIRONMENTS_FILE.relative_to(PROJECT_ROOT)}: add under `settings:` "
                f"`{variable}: {{local: <value or null>, ci: <value or null>, "
                f"prod: <value or {{secret: <Secret name>}}>}}`"
            )
            continue
        for env in ENVIRONMENTS:
            if env not in per_env:
                gaps.append(f"{variable}: add `{env}:` (a value, null for the default)")
        if "prod" in per_env and per_env["prod"] is None:
            gaps.append(
                f"{variable}: prod is null; production must not fall through to a default "
                "(give a value, or {secret: <Secret name>})"
            )
    return gaps


def environment(env: str, declarations: dict[str, dict[str, Declaration]] | None = None):
    """``(literals, secrets)`` of one environment: variables with values, and Secret refs."""
    if env not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {env!r}; known: {', '.join(ENVIRONMENTS)}")
    declarations = load_declarations() if declarations is None else declarations
    literals: dict[str, str] = {}
    secrets: dict[str, SecretRef] = {}
    for variable, per_env in declarations.items():
        value = per_env.get(env)
        if isinstance(value, SecretRef):
            secrets[variable] = value
        elif value is not None:
            literals[variable] = value
    return literals, secrets


def settings_for(env: str) -> LakehouseSettings:
    """The settings an environment resolves to, Secret values replaced by a placeholder."""
    literals, secrets = environment(env)
    values = {**literals, **dict.fromkeys(secrets, SECRET_PLACEHOLDER)}
    fields = {v[len("LAKEHOUSE_") :].lower(): value for v, value in values.items()}
    return LakehouseSettings(**fields)


def config_map(env: str = "prod", namespace: str = "dagster") -> dict[str, Any]:
    """The ConfigMap of an environment's non-secret settings (pods load it with envFrom)."""
    literals, _ = environment(env)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIG_MAP_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "lakehouse", "lakehouse/env": env},
        },
        "data": dict(sorted(literals.items())),
    }


def secret_keys(env: str = "prod") -> dict[str, list[str]]:
    """``{Secret name: [keys]}`` an operator must create before installing.

    The settings' Secrets, and the alert webhook's: its URL is no setting (the alerts
    resource reads it through ``dagster.EnvVar`` only when it sends), but an environment
    that alerts names its Secret in the ``alerts`` block, and the code server loads that
    Secret, so it too must exist before the install.
    """
    _, secrets = environment(env)
    grouped: dict[str, list[str]] = {}
    for variable, ref in sorted(secrets.items()):
        grouped.setdefault(ref.secret, []).append(variable)
    alerts = alerts_config(env)
    if alerts.enabled and alerts.webhook_secret:
        grouped.setdefault(alerts.webhook_secret, []).append(WEBHOOK_URL_VARIABLE)
    return dict(sorted(grouped.items()))


def trino_catalog_file(env: str = "prod") -> str:
    """Trino's Iceberg catalog file, from the one catalog translation."""
    props = trino_catalog_properties(settings_for(env))
    header = (
        "# Generated by `python -m lakehouse.deployment trino-catalog prod` from\n"
        "# deploy/environments.yaml and lakehouse/catalog_config.py; a test keeps it in sync.\n"
    )
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def parse_properties(text: str) -> dict[str, str]:
    """A Java properties file of ``key=value`` lines (what Trino's catalog files use)."""
    props = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def parse_spark_defaults(text: str) -> dict[str, str]:
    """``spark-defaults.conf``: a key, whitespace, the value, per line."""
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def _declaration(variable: str, env: str, value: Any) -> Declaration:
    if value is None:
        return None
    if isinstance(value, dict):
        if set(value) != {"secret"} or not isinstance(value["secret"], str):
            raise ValueError(f"{variable}.{env}: a reference is written {{secret: <name>}}")
        return SecretRef(value["secret"])
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lakehouse.deployment", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    cm = commands.add_parser("configmap", help="print the lakehouse-env ConfigMap (YAML)")
    cm.add_argument("env", choices=ENVIRONMENTS)
    cm.add_argument("--namespace", default="dagster")
    secrets = commands.add_parser("secret-keys", help="print the Secrets and keys to create")
    secrets.add_argument("env", choices=ENVIRONMENTS)
    trino = commands.add_parser("trino-catalog", help="print Trino's Iceberg catalog file")
    trino.add_argument("env", choices=ENVIRONMENTS)
    args = parser.parse_args(argv)
    if args.command == "configmap":
        sys.stdout.write(yaml.safe_dump(config_map(args.env, args.namespace), sort_keys=False))
    elif args.command == "secret-keys":
        for name, keys in secret_keys(args.env).items():
            print(f"{name}: {' '.join(keys)}")
    else:
        sys.stdout.write(trino_catalog_file(args.env))


if __name__ == "__main__":
    main()
