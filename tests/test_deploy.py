"""The production deployment, proven without a cluster.

No Kubernetes, Helm or Docker runs here. What runs for real: the production instance
(``deploy/dagster.yaml``) on a PostgreSQL database with its ``K8sRunLauncher`` (a dummy
kubeconfig, nothing contacted), which renders the run Jobs it would submit; dagster-k8s's
own builders render the step Jobs; every manifest is validated strictly against the
Kubernetes schemas (``kubernetes-validate``). The Helm values are checked against what the
chart renders, the environments against the settings, the Trino catalog against the one
catalog translation, and the Dockerfile with hadolint.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.launcher import LaunchRunContext
from dagster_k8s import K8sRunLauncher
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import construct_dagster_k8s_job, get_user_defined_k8s_config

from lakehouse import deployment
from lakehouse.orchestration.k8s import (
    K8S_CONFIG_TAG,
    PROFILE_LABEL,
    PROFILES,
    k8s_config,
    k8s_tags,
)
from lakehouse.settings import PROJECT_ROOT, LakehouseSettings

DEPLOY = PROJECT_ROOT / "deploy"
K8S_VERSION = kubernetes_validate.utils.latest_version()
RELEASE, NAMESPACE = "lakehouse", "dagster"
FULLNAME = f"{RELEASE}-dagster"  # the chart's "dagster.fullname" for this release


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return load_yaml(DEPLOY / "helm" / "values.yaml")


@pytest.fixture(scope="module")
def user_deployment(values) -> dict:
    (deployment_,) = values["dagster-user-deployments"]["deployments"]
    return deployment_


def validate_strictly(manifest: dict, what: str) -> None:
    try:
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{what}: {error.message} at {'/'.join(map(str, error.path))}")


def manifest_of(job: kubernetes.client.V1Job) -> dict:
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.fixture(scope="module")
def defs(dbt_manifest):
    """The code location as production loads it: its settings offer the k8s executor."""
    from lakehouse.definitions import build_definitions

    with pytest.MonkeyPatch.context() as env:
        env.setenv("LAKEHOUSE_K8S_EXECUTOR", "true")
        return build_definitions()


# --- the production instance -------------------------------------------------------------


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory) -> Path:
    """A kubeconfig naming a cluster that does not exist: loading it contacts nothing."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "offline", "user": {"token": "offline"}}],
                "contexts": [
                    {"name": "offline", "context": {"cluster": "offline", "user": "offline"}}
                ],
                "current-context": "offline",
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def prod_instance(postgres_dsn, kubeconfig, tmp_path_factory):
    """deploy/dagster.yaml as the instance, with only its cluster and database pointers moved.

    The kube config is the dummy file instead of the in-cluster one, and the Postgres
    storage points at a fresh database on the test server; everything else is the file.
    """
    import psycopg
    from psycopg import sql

    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    database = f"dagster_prod_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    config = load_yaml(DEPLOY / "dagster.yaml")
    assert config["run_launcher"]["config"]["load_incluster_config"] is True
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        config[storage]["config"]["postgres_db"].update(
            hostname=params.get("host", "127.0.0.1"),
            port=int(params.get("port", 5432)),
            username=params.get("user", "postgres"),
            db_name=database,
            params={},
        )
    config["run_launcher"]["config"].update(
        load_incluster_config=False, kubeconfig_file=str(kubeconfig)
    )
    home = tmp_path_factory.mktemp("dagster_prod")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_PG_PASSWORD", params.get("password", ""))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        yield instance
    finally:
        instance.dispose()
        mp.undo()
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database))
            )


@pytest.mark.postgres
def test_instance_migrate_job_command_migrates_and_needs_the_in_cluster_config(
    postgres_dsn, kubeconfig, tmp_path
):
    """What deploy/k8s/migrate-job.yaml runs, on the production instance config as the chart
    renders it, its storage on a fresh test database. `dagster instance migrate` builds the
    run launcher, which loads the in-cluster config: so the Job mounts a token (of an
    account without a Role). With a kubeconfig instead, the migration itself succeeds."""
    import psycopg
    from psycopg import sql

    (job,) = k8s_documents("migrate-job.yaml")
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    _, _, bound = rbac()
    assert pod["serviceAccountName"] not in bound
    (container,) = pod["containers"]
    params = psycopg.conninfo.conninfo_to_dict(postgres_dsn)
    database = f"dagster_migrate_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    config = load_yaml(DEPLOY / "dagster.yaml")
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        config[storage]["config"]["postgres_db"].update(
            hostname=params.get("host", "127.0.0.1"),
            port=int(params.get("port", 5432)),
            username=params.get("user", "postgres"),
            db_name=database,
            params={},
        )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")},
        "DAGSTER_HOME": str(tmp_path),
        "DAGSTER_PG_PASSWORD": params.get("password", ""),
    }
    command = [str(Path(sys.executable).parent / container["args"][0]), *container["args"][1:]]

    def migrate() -> subprocess.CompletedProcess:
        (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    try:
        outside_a_pod = migrate()
        assert outside_a_pod.returncode != 0
        assert "Service host/port is not set" in outside_a_pod.stderr
        config["run_launcher"]["config"].update(
            load_incluster_config=False, kubeconfig_file=str(kubeconfig)
        )
        done = migrate()
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database))
            )


@pytest.mark.postgres
def test_production_instance_loads_with_k8s_launcher_and_postgres(prod_instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    launcher = prod_instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == NAMESPACE
    assert launcher.instance_config_map == f"{FULLNAME}-instance"
    assert launcher.resources == PROFILES["light"].resources()
    assert isinstance(prod_instance.run_storage, PostgresRunStorage)
    assert isinstance(prod_instance.event_log_storage, PostgresEventLogStorage)
    coordinator = prod_instance.run_coordinator
    assert type(coordinator).__name__ == "QueuedRunCoordinator"
    limits = {
        (lim["key"], json.dumps(lim.get("value"))): lim["limit"]
        for lim in coordinator.get_run_queue_config().tag_concurrency_limits
    }
    assert limits[("lakehouse/engine", '"spark"')] == 2
    assert limits[("dagster/backfill", "null")] == 4
    assert limits[("lakehouse/source", '{"applyLimitPerUniqueValue": true}')] == 1


def test_local_instance_yaml_loads_with_the_same_run_queue_rules(tmp_path):
    """The root dagster.yaml (dagster dev) loads; its per-source limit matches production's."""
    (tmp_path / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_launcher).__name__ == "DefaultRunLauncher"
        local = instance.run_coordinator.get_run_queue_config().tag_concurrency_limits
    finally:
        instance.dispose()
    prod = load_yaml(DEPLOY / "dagster.yaml")["run_coordinator"]["config"]
    per_source = [lim for lim in prod["tag_concurrency_limits"] if lim["key"] == "lakehouse/source"]
    assert per_source and all(lim in local for lim in per_source)


@pytest.mark.postgres
def test_the_executor_is_decided_by_the_instance_a_run_lands_on(prod_instance, defs):
    """One pod per step under the K8sRunLauncher; one process per run locally."""
    from types import SimpleNamespace

    executor_def = defs.resolve_job_def("lakehouse").executor_def
    config = {"retries": {"enabled": {}}}
    on_k8s = executor_def.executor_creation_fn(
        SimpleNamespace(instance=prod_instance, executor_config=config)
    )
    assert type(on_k8s).__name__ == "StepDelegatingExecutor"
    with dg.instance_for_test() as local:
        on_laptop = executor_def.executor_creation_fn(
            SimpleNamespace(instance=local, executor_config=config)
        )
    assert type(on_laptop).__name__ == "InProcessExecutor"
    # an ingest job runs its step in its run pod, on the cluster too
    ingest = defs.resolve_job_def("ingest_clickstream")
    in_run_pod = ingest.executor_def.executor_creation_fn(
        SimpleNamespace(
            instance=prod_instance,
            executor_config=config,
            job=SimpleNamespace(get_definition=lambda: ingest),
        )
    )
    assert type(in_run_pod).__name__ == "InProcessExecutor"


def test_locally_every_run_executes_in_one_process():
    """Without LAKEHOUSE_K8S_EXECUTOR the executor is in-process (config: retries only)."""
    from types import SimpleNamespace

    from lakehouse.orchestration.k8s import lakehouse_executor

    executor_def = lakehouse_executor(k8s=False)
    assert executor_def.name == "lakehouse"

    @dg.job(executor_def=executor_def)
    def probe() -> None:
        pass

    assert dg.validate_run_config(probe, {"execution": {"config": {"retries": {"disabled": {}}}}})
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurrent"):
        dg.validate_run_config(probe, {"execution": {"config": {"max_concurrent": 4}}})
    with dg.instance_for_test() as local:
        executor = executor_def.executor_creation_fn(
            SimpleNamespace(instance=local, executor_config={"retries": {"enabled": {}}})
        )
    assert type(executor).__name__ == "InProcessExecutor"


def test_instance_yaml_is_what_the_chart_renders_from_the_values(values):
    assert load_yaml(DEPLOY / "dagster.yaml") == render_instance(with_chart_defaults(values))


# The defaults of the pinned chart (dagster/dagster 1.13.27, deploy/README.md step 8) that
# reach the instance ConfigMap: the values the chart's values.yaml gives where ours are
# silent. No Helm binary or chart archive is reachable here, so they are written down from
# the chart's values.yaml and templates; update them with the chart version.
CHART_VERSION = "1.13.27"
CHART_DEFAULTS = {
    "scheduler": {"type": "DagsterDaemonScheduler", "config": {}},
    "computeLogManager": {"type": "NoOpComputeLogManager", "config": {}},
    "pythonLogs": {},
    "retention": {"enabled": False},
    "dagsterDaemon": {
        "runCoordinator": {
            "config": {"queuedRunCoordinator": {"dequeueUseThreads": True, "dequeueNumWorkers": 4}}
        },
        "sensors": {"useThreads": True, "numWorkers": 4},
        "schedules": {"useThreads": True, "numWorkers": 4},
    },
}


def with_chart_defaults(values: dict, defaults: dict = CHART_DEFAULTS) -> dict:
    """Helm's merge: our values over the chart's defaults, maps merged key by key."""
    merged = dict(defaults)
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = with_chart_defaults(value, merged[key])
        else:
            merged[key] = value
    return merged


def test_the_chart_version_is_the_dagster_version_of_the_lock():
    lock = (PROJECT_ROOT / "requirements.lock").read_text()
    assert f"\ndagster=={CHART_VERSION}\n" in lock
    assert f"dagster/dagster -n dagster --version {CHART_VERSION}" in (
        (DEPLOY / "README.md").read_text()
    )


# the chart renders runK8sConfig's keys snake_case and their contents as written
_RUN_K8S_CONFIG_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def render_instance(values: dict) -> dict:
    """The part of the chart's configmap-instance template these values use, in Python.

    Mirrors helm/dagster/templates/configmap-instance.yaml and helpers/instance/*.tpl of
    the Dagster chart (keys renamed camelCase -> snake_case, defaults filled the same way).
    """
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg["postgresqlParams"],
        "scheme": pg["postgresqlScheme"],
    }
    k8s = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher = {
        "load_incluster_config": k8s["loadInclusterConfig"],
        "job_namespace": k8s["jobNamespace"] or NAMESPACE,
        "image_pull_policy": k8s["imagePullPolicy"],
        "service_account_name": values["global"].get("serviceAccountName")
        or values["serviceAccount"]["name"],
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{FULLNAME}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        **({"labels": k8s["labels"]} if k8s.get("labels") else {}),
        **({"resources": k8s["resources"]} if k8s.get("resources") else {}),
        **({"fail_pod_on_run_failure": True} if k8s.get("failPodOnRunFailure") else {}),
        **({"security_context": k8s["securityContext"]} if k8s.get("securityContext") else {}),
        **(
            {"env_secrets": [ref["name"] for ref in k8s["envSecrets"]]}
            if k8s.get("envSecrets")
            else {}
        ),
        **(
            {"run_k8s_config": {_RUN_K8S_CONFIG_KEYS[k]: v for k, v in k8s["runK8sConfig"].items()}}
            if k8s.get("runK8sConfig")
            else {}
        ),
    }
    for unused in ("envConfigMaps", "envVars", "volumeMounts", "volumes"):
        assert not k8s.get(unused), f"render_instance does not render {unused} yet"
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    retries = values["dagsterDaemon"]["runRetries"]
    assert values["computeLogManager"]["type"] == "NoOpComputeLogManager", "render it first"
    assert not values["pythonLogs"] and not values["retention"]["enabled"], "render them first"
    threads = {
        part: {
            "use_threads": True,
            **({"num_workers": values["dagsterDaemon"][part]["numWorkers"]}
               if values["dagsterDaemon"][part].get("numWorkers") else {}),
        }
        for part in ("sensors", "schedules")
        if values["dagsterDaemon"][part].get("useThreads")
    }  # fmt: skip
    storage = lambda module, cls: {  # noqa: E731
        "module": f"dagster_postgres.{module}",
        "class": cls,
        "config": {"postgres_db": postgres_db},
    }
    return {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": storage("schedule_storage", "PostgresScheduleStorage"),
        "run_storage": storage("run_storage", "PostgresRunStorage"),
        "event_log_storage": storage("event_log", "PostgresEventLogStorage"),
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": queued["maxConcurrentRuns"],
                "tag_concurrency_limits": queued["tagConcurrencyLimits"],
                **({"dequeue_use_threads": True} if queued.get("dequeueUseThreads") else {}),
                **(
                    {"dequeue_num_workers": queued["dequeueNumWorkers"]}
                    if queued.get("dequeueNumWorkers")
                    else {}
                ),
            },
        },
        "compute_logs": {
            "module": "dagster.core.storage.noop_compute_log_manager",
            "class": "NoOpComputeLogManager",
        },
        "run_monitoring": {
            "enabled": monitoring["enabled"],
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
            "free_slots_after_run_end_seconds": monitoring["freeSlotsAfterRunEndSeconds"],
        },
        "run_retries": {
            "enabled": retries["enabled"],
            **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {}),
        },
        **threads,
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }


# --- Helm values ------------------------------------------------------------------------


def test_helm_values_use_the_chart_keys_and_reference_secrets_only(values, user_deployment):
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["dagsterDaemon"]["enabled"] is True
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert values["postgresql"]["enabled"] is False
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["dagster-user-deployments"]["enabled"] is True
    # keys the chart's schema (helm/dagster/schema) defines for a user deployment
    known = {
        "name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs",
        "includeConfigInLaunchedRuns", "env", "envConfigMaps", "envSecrets", "annotations",
        "nodeSelector", "affinity", "tolerations", "podSecurityContext", "securityContext",
        "resources", "livenessProbe", "readinessProbe", "startupProbe", "labels",
        "volumeMounts", "volumes", "schedulerName", "serviceAccount",
    }  # fmt: skip
    assert set(user_deployment) <= known, set(user_deployment) - known
    assert user_deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert user_deployment["dagsterApiGrpcArgs"] == ["-m", "lakehouse.definitions"]
    # every env value is a literal that is no secret, or a reference to a Secret
    for var in user_deployment["env"]:
        assert ("value" in var) != ("valueFrom" in var), var
        if "valueFrom" in var:
            assert set(var["valueFrom"]) == {"secretKeyRef"}, var
        assert not re.search(r"PASSWORD|SECRET|DSN", var["name"]) or "valueFrom" in var, var
    for text in (DEPLOY / "helm" / "values.yaml", DEPLOY / "dagster.yaml"):
        assert "lakehouse-local-secret" not in text.read_text()


# Which pod reads which Secret: the code server's sensors read the catalog, the landing
# bucket and the OLTP database, and its alerts sensor posts to the webhook; run and step
# pods also mask PII and log in to Trino. The chart hands the code server's list on to
# every run (includeConfigInLaunchedRuns), the webhook's Secret with it; nothing else gets
# any but the exporter and the Jobs (their own, smaller sets, below).
ALERTS_SECRET = "lakehouse-alerts"
CODE_SERVER_SECRETS = {"lakehouse-catalog", "lakehouse-s3", "lakehouse-oltp", ALERTS_SECRET}
RUN_POD_SECRETS = CODE_SERVER_SECRETS | {"lakehouse-pii", "lakehouse-trino-client"}
# the exporter reads the catalog (password) and table files and the landing bucket (S3)
METRICS_SECRETS = {"lakehouse-catalog", "lakehouse-s3"}


def test_helm_values_pass_the_environment_and_its_secrets_to_every_pod(values, user_deployment):
    config_maps = [ref["name"] for ref in user_deployment["envConfigMaps"]]
    assert deployment.CONFIG_MAP_NAME in config_maps
    code_server = {ref["name"] for ref in user_deployment["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    runs_only = {ref["name"] for ref in launcher["envSecrets"]}
    assert code_server == CODE_SERVER_SECRETS
    assert code_server | runs_only == RUN_POD_SECRETS == set(deployment.secret_keys("prod"))
    # each Secret holds only what one consumer set reads: the PII key and the OLTP DSN alone
    keys = deployment.secret_keys("prod")
    assert keys["lakehouse-pii"] == ["LAKEHOUSE_PII_KEY"]
    assert keys["lakehouse-oltp"] == ["LAKEHOUSE_POSTGRES_DSN"]
    assert keys["lakehouse-catalog"] == ["LAKEHOUSE_CATALOG_PASSWORD"]
    assert keys[ALERTS_SECRET] == ["LAKEHOUSE_ALERT_WEBHOOK_URL"]
    image = f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    env = {var["name"]: var for var in user_deployment["env"]}
    assert env["SPARK_CONTAINER_IMAGE"]["value"] == image
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "lakehouse-s3"
    # the webserver and daemon get no lakehouse Secret at all
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert not values[component].get("envSecrets"), component


def secrets_of(pod_spec: dict) -> set[str]:
    """Every Secret a pod spec's containers load (envFrom, env) or mount."""
    names = {v["secret"]["secretName"] for v in pod_spec.get("volumes") or [] if "secret" in v}
    for container in [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]:
        names |= {r["secretRef"]["name"] for r in container.get("envFrom", []) if "secretRef" in r}
        names |= {
            var["valueFrom"]["secretKeyRef"]["name"]
            for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
        }
    return names


def exporter() -> dict[str, dict]:
    return {
        d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "metrics" / "exporter.yaml").read_text())
    }


def test_the_alert_webhook_is_its_own_secret_loaded_where_the_sensor_runs(values, user_deployment):
    """The alerts sensor is evaluated in the code server (the daemon asks it over gRPC), so
    the webhook URL is loaded there, from a Secret holding nothing else; the webserver,
    daemon, exporter, Jobs and Spark executors never see it. Run and step pods receive the
    code server's Secret list from the chart (includeConfigInLaunchedRuns): they are the one
    place it goes beyond, and the run launcher adds nothing of it."""
    from resources.alerts import WEBHOOK_URL_VARIABLE, alerts_config

    assert alerts_config("prod").webhook_secret == ALERTS_SECRET
    assert deployment.secret_keys("prod")[ALERTS_SECRET] == [WEBHOOK_URL_VARIABLE]
    assert ALERTS_SECRET in {ref["name"] for ref in user_deployment["envSecrets"]}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert ALERTS_SECRET not in {ref["name"] for ref in launcher["envSecrets"]}
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert not values[component].get("envSecrets"), component
        assert not values[component].get("env"), component
    others = {
        "metrics exporter": exporter()["Deployment"]["spec"]["template"]["spec"],
        "executor": load_yaml(DEPLOY / "spark" / "executor-pod-template.yaml")["spec"],
        **{
            name: k8s_documents(name)[0]["spec"]["template"]["spec"]
            for name in ("provision-job.yaml", "migrate-job.yaml")
        },
    }
    for name, pod in others.items():
        assert ALERTS_SECRET not in secrets_of(pod), name
    spark = deployment.parse_spark_defaults((DEPLOY / "spark" / "spark-defaults.conf").read_text())
    assert not any(v.startswith(f"{ALERTS_SECRET}:") for v in spark.values())
    # the Secret the ops branch first named, holding every value, exists nowhere any more
    for path in [*DEPLOY.rglob("*.yaml"), DEPLOY / "README.md"]:
        assert "lakehouse-secrets" not in path.read_text(), path
    # created like the others: from a file, never from a literal on a command line
    readme = (DEPLOY / "README.md").read_text()
    assert f"create secret generic {ALERTS_SECRET} --from-file={WEBHOOK_URL_VARIABLE}" in readme
    assert "--from-literal" not in readme


# --- run and step Job manifests ---------------------------------------------------------


def container_context(values: dict, user_deployment: dict) -> dict:
    """What the chart's user deployment passes to launched runs (k8sContainerContext helper)."""
    return {
        "k8s": {
            "image_pull_policy": user_deployment["image"]["pullPolicy"],
            "env_config_maps": [f"{FULLNAME}-{user_deployment['name']}-user-env"]
            + [ref["name"] for ref in user_deployment["envConfigMaps"]],
            "env_secrets": [ref["name"] for ref in user_deployment["envSecrets"]],
            "labels": user_deployment["labels"],
            "resources": user_deployment["resources"],
            "namespace": NAMESPACE,
            # dagsterUserDeployments.serviceAccountName: global's, else the subchart's
            "service_account_name": values["global"].get("serviceAccountName")
            or values["dagster-user-deployments"]["serviceAccount"]["name"],
            "env": user_deployment["env"],
            "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
        }
    }


@pytest.fixture(scope="module")
def code_origin(values, user_deployment):
    image = f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    repo = ReconstructableRepository.for_module(
        "lakehouse.definitions",
        "defs",
        working_directory="/opt/lakehouse",
        container_image=image,
        container_context=container_context(values, user_deployment),
    )
    return image, repo


def launch(instance, defs, code_origin, job_name: str, run_config: dict, tags: dict):
    """Launch a run through the production K8sRunLauncher; return the Job it submits."""
    _, repo = code_origin
    job = defs.resolve_job_def(job_name)
    run = instance.create_run_for_job(
        job,
        run_config=run_config,
        tags={**job.tags, **tags},
        job_code_origin=repo.get_reconstructable_job(job_name).get_python_origin(),
    )
    submitted = []

    class RecordingBatchApi:
        """Stands in for the cluster's API server: records the Job instead of creating it."""

        def create_namespaced_job(self, body, namespace, **_):
            submitted.append((namespace, body))
            return body

    instance.run_launcher._api_client.batch_api = RecordingBatchApi()
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    ((namespace, body),) = submitted
    return run, namespace, manifest_of(body)


def assert_lakehouse_pod(manifest: dict, image: str, profile: str) -> dict:
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image
    secrets = {ref["secretRef"]["name"] for ref in container["envFrom"] if "secretRef" in ref}
    maps = {ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref}
    assert deployment.CONFIG_MAP_NAME in maps
    assert secrets == RUN_POD_SECRETS
    env = {var["name"]: var for var in container["env"]}
    password = env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == "dagster-postgresql-secret"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lakehouse-s3"
    assert all("value" not in var or "SECRET" not in var["name"] for var in container["env"])
    assert container["resources"] == PROFILES[profile].resources()
    assert not restricted_violations(pod), restricted_violations(pod)
    expected_account = "lakehouse-spark-driver" if profile == "spark" else "lakehouse-run"
    assert pod["serviceAccountName"] == expected_account
    # the network policies select this pod by the labels it really gets
    labels = manifest["spec"]["template"]["metadata"]["labels"]
    assert _selects(policies()["lakehouse-services-egress"]["podSelector"], labels), labels
    assert _selects(policies()["trino-egress"]["podSelector"], labels), labels
    assert manifest["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == (
        "lakehouse"
    )
    return container


RUNS = {
    # what the Kafka sensor submits
    "sensor": (
        "ingest_clickstream",
        {"ops": {"bronze_clickstream": {"config": {"until_offsets": {"0": 42}}}}},
        {"lakehouse/batch": "events.clickstream@0:0", "dagster/sensor_name": "s"},
    ),
    # a run of a backfill
    "backfill": ("lakehouse", {}, {"dagster/backfill": "bfabcdef"}),
    # the gold_daily schedule
    "schedule": ("build_gold", {}, {"dagster/schedule_name": "gold_daily"}),
}


@pytest.mark.postgres
@pytest.mark.parametrize("started_by", sorted(RUNS))
def test_run_job_manifest_is_valid_kubernetes(prod_instance, defs, code_origin, started_by):
    job_name, run_config, tags = RUNS[started_by]
    run, namespace, manifest = launch(prod_instance, defs, code_origin, job_name, run_config, tags)
    validate_strictly(manifest, f"run Job of {job_name}")
    assert namespace == NAMESPACE
    assert manifest["metadata"]["name"] == f"dagster-run-{run.run_id}"
    labels = manifest["metadata"]["labels"]
    assert labels["dagster/job"] == job_name
    assert labels["dagster/run-id"] == run.run_id
    assert labels["app.kubernetes.io/component"] == "run_worker"
    # an ingest run executes its one step in the run pod: sized for ingestion
    profile = "ingest" if job_name.startswith("ingest_") else "light"
    container = assert_lakehouse_pod(manifest, code_origin[0], profile)
    assert container["args"][:3] == ["dagster", "api", "execute_run"]


def step_manifest(instance, run, step_key: str, step_tags: dict, image: str) -> dict:
    """The Job the k8s executor submits for one step, built as its K8sStepHandler does:
    the run's container context without run tags, then the step's dagster-k8s/config."""
    launcher = instance.run_launcher
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(
        K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(step_tags))
    )
    job_config = context.get_k8s_job_config(None, launcher).with_image(image)
    name = f"dagster-step-{uuid.uuid4().hex}"
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=name,
        pod_name=name,
        component="step_worker",
        user_defined_k8s_config=context.run_k8s_config,
        labels={"dagster/job": run.job_name, "dagster/op": step_key, "dagster/run-id": run.run_id},
        env_vars=[{"name": "DAGSTER_RUN_STEP_KEY", "value": step_key}],
    )
    return manifest_of(job)


EXPECTED_PROFILES = {
    "bronze_clickstream": "ingest",
    "bronze_marketing_spend": "ingest",
    "bronze_cdc_customers": "ingest",
    "bronze_cdc_orders": "ingest",
    "bronze_cdc_order_items": "ingest",
    "bronze__products": "ingest",
    "silver_page_views": "arrow",
    "silver_customers": "arrow",
    "silver_orders": "arrow",
    "silver_order_items": "arrow",
    "silver__products": "arrow",
    "silver__marketing_spend": "arrow",
    "gold_dbt_models": "dbt",
    # a contract check holds a bucket of keys and spills the rest to disk, as a build does
    **{
        f"silver_{table}_contract": "arrow"
        for table in (
            "page_views",
            "customers",
            "customers_history",
            "orders",
            "orders_history",
            "order_items",
            "order_items_history",
            "products",
            "marketing_spend",
        )
    },
}


@pytest.mark.postgres
def test_every_step_job_is_valid_kubernetes_and_sized_by_its_asset(
    prod_instance, defs, code_origin
):
    """Steps of a whole-graph backfill run: heavy assets and the contract checks get their
    profile, the other checks `light`."""
    image, _ = code_origin
    run, _, _ = launch(prod_instance, defs, code_origin, "lakehouse", {}, {"dagster/backfill": "b"})
    nodes = defs.resolve_job_def("lakehouse").graph.nodes
    seen = {}
    for node in nodes:
        manifest = step_manifest(prod_instance, run, node.name, node.tags, image)
        validate_strictly(manifest, f"step Job of {node.name}")
        labels = manifest["spec"]["template"]["metadata"]["labels"]
        profile = labels.get(PROFILE_LABEL, "light")  # untagged steps run as the run pod does
        assert_lakehouse_pod(manifest, image, profile)
        assert labels["dagster/op"] == node.name
        assert labels["app.kubernetes.io/component"] == "step_worker"
        seen[node.name] = profile
    assert {k: v for k, v in seen.items() if v != "light"} == EXPECTED_PROFILES


@pytest.mark.postgres
def test_spark_profile_step_job_advertises_its_pod_ip(prod_instance, defs, code_origin):
    image, _ = code_origin
    run, _, _ = launch(prod_instance, defs, code_origin, "build_gold", {}, {})
    manifest = step_manifest(prod_instance, run, "spark_step", k8s_tags("spark"), image)
    validate_strictly(manifest, "step Job of a Spark asset")
    container = assert_lakehouse_pod(manifest, image, "spark")
    env = {var["name"]: var for var in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert manifest["spec"]["template"]["metadata"]["labels"][PROFILE_LABEL] == "spark"
    # the one step pod whose account may start executor pods (and it keeps the token)
    assert manifest["spec"]["template"]["spec"]["serviceAccountName"] == "lakehouse-spark-driver"
    assert manifest["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_profile_tags_are_what_dagster_k8s_reads():
    for name, profile in PROFILES.items():
        tags = k8s_tags(name)
        assert set(tags) == {K8S_CONFIG_TAG}
        config = get_user_defined_k8s_config(tags)  # dagster-k8s's own parser and schema
        assert config.container_config["resources"] == profile.resources()
        assert config.pod_template_spec_metadata["labels"] == {PROFILE_LABEL: name}


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="known: arrow, dbt, ingest, light, spark"):
        k8s_config("huge")


# --- run config of every job ------------------------------------------------------------

K8S_EXECUTION = {
    "config": {
        "max_concurrent": 4,
        "tag_concurrency_limits": [{"key": "lakehouse/engine", "value": "spark", "limit": 1}],
        "step_k8s_config": {"job_spec_config": {"ttl_seconds_after_finished": 86400}},
    }
}
SENSOR_OP_CONFIG = {
    "kafka": {"until_offsets": {"0": 10, "1": 7}, "max_records": 1000},
    "landing": {"files": ["marketing_spend/2026-01-01.csv@etag"]},
}


def run_configs(defs, sources) -> dict[str, dict]:
    """The run config each job receives in production: sensor op config + k8s execution."""
    configs = {}
    for job in defs.get_repository_def().get_all_jobs():
        ops = {}
        for source in (*sources.kafka, *sources.cdc):
            if job.graph.has_node_named(f"bronze_{source.bronze_name}"):
                ops[f"bronze_{source.bronze_name}"] = {"config": SENSOR_OP_CONFIG["kafka"]}
        for source in sources.landing:
            if job.graph.has_node_named(f"bronze_{source.bronze_name}"):
                ops[f"bronze_{source.bronze_name}"] = {"config": SENSOR_OP_CONFIG["landing"]}
        configs[job.name] = {"execution": K8S_EXECUTION, **({"ops": ops} if ops else {})}
    return configs


def test_run_config_of_every_job_validates(defs):
    from lakehouse.declarations.sources import sources

    configs = run_configs(defs, sources())
    assert {"ingest_clickstream", "ingest_marketing_spend", "build_gold", "lakehouse"} <= set(
        configs
    )
    for name, config in configs.items():
        job = defs.get_repository_def().get_job(name)
        assert job.executor_def.name == "lakehouse", name
        assert dg.validate_run_config(job, config), name


def test_a_typo_in_k8s_execution_config_is_caught(defs):
    job = defs.get_repository_def().get_job("build_gold")
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, {"execution": {"config": {"max_concurent": 4}}})


# --- environments -----------------------------------------------------------------------


def test_every_setting_is_declared_for_every_environment():
    gaps = deployment.missing_declarations(deployment.load_declarations())
    assert not gaps, "\n".join(gaps)
    declared = set(deployment.load_declarations())
    stale = declared - set(deployment.setting_variables())
    assert not stale, f"deploy/environments.yaml declares settings that do not exist: {stale}"


def test_a_missing_declaration_says_what_to_add_where():
    declarations = deployment.load_declarations()
    del declarations["LAKEHOUSE_TRINO_USER"]
    declarations["LAKEHOUSE_TRINO_PORT"]["prod"] = None
    del declarations["LAKEHOUSE_TRINO_HOST"]["ci"]
    gaps = "\n".join(deployment.missing_declarations(declarations))
    assert "deploy/environments.yaml: add under `settings:` `LAKEHOUSE_TRINO_USER:" in gaps
    assert "LAKEHOUSE_TRINO_PORT: prod is null" in gaps
    assert "LAKEHOUSE_TRINO_HOST: add `ci:`" in gaps


def test_prod_secrets_are_references_and_the_configmap_holds_none():
    declarations = deployment.load_declarations()
    secret_fields = {
        f"LAKEHOUSE_{name.upper()}"
        for name, field in LakehouseSettings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    assert secret_fields, "LakehouseSettings has SecretStr fields"
    for variable in secret_fields | {"LAKEHOUSE_POSTGRES_DSN"}:
        assert isinstance(declarations[variable]["prod"], deployment.SecretRef), variable
    config_map = deployment.config_map("prod")
    validate_strictly(config_map, "lakehouse-env ConfigMap")
    assert not set(config_map["data"]) & (secret_fields | {"LAKEHOUSE_POSTGRES_DSN"})
    assert all(deployment.SECRET_PLACEHOLDER not in v for v in config_map["data"].values())


def test_each_environment_resolves_to_valid_settings():
    local, ci, prod = (deployment.settings_for(env) for env in deployment.ENVIRONMENTS)
    assert (local.env, ci.env, prod.env) == ("local", "ci", "prod")
    assert local.resolved_catalog_uri.startswith("sqlite:///")
    assert prod.dbt_target == "trino"
    assert prod.resolved_catalog_uri.startswith("postgresql://")
    assert prod.resolved_warehouse.startswith("s3://")
    assert prod.spark_master.startswith("k8s://")


def test_configmap_cli_prints_what_kubectl_applies(capsys):
    deployment.main(["configmap", "prod"])
    assert yaml.safe_load(capsys.readouterr().out) == deployment.config_map("prod")
    deployment.main(["secret-keys", "prod"])
    assert sorted(capsys.readouterr().out.splitlines()) == [
        "lakehouse-alerts: LAKEHOUSE_ALERT_WEBHOOK_URL",
        "lakehouse-catalog: LAKEHOUSE_CATALOG_PASSWORD",
        "lakehouse-oltp: LAKEHOUSE_POSTGRES_DSN",
        "lakehouse-pii: LAKEHOUSE_PII_KEY",
        "lakehouse-s3: LAKEHOUSE_S3_ACCESS_KEY_ID LAKEHOUSE_S3_SECRET_ACCESS_KEY",
        "lakehouse-trino-client: LAKEHOUSE_TRINO_PASSWORD",
    ]


# --- Trino and dbt ----------------------------------------------------------------------


def test_trino_catalog_file_is_the_catalog_translation_for_prod():
    path = DEPLOY / "trino" / f"{deployment.settings_for('prod').catalog_name}.properties"
    assert path.exists(), "the file name is the Trino catalog name, i.e. LAKEHOUSE_CATALOG_NAME"
    on_disk = deployment.parse_properties(path.read_text())
    assert on_disk == deployment.parse_properties(deployment.trino_catalog_file("prod")), (
        "regenerate: python -m lakehouse.deployment trino-catalog prod > " + str(path)
    )
    assert on_disk["iceberg.jdbc-catalog.connection-password"].startswith("${ENV:")
    assert on_disk["s3.aws-secret-key"] == "${ENV:LAKEHOUSE_S3_SECRET_ACCESS_KEY}"


TRINO_SECRET_KEYS = {
    "LAKEHOUSE_CATALOG_PASSWORD",
    "LAKEHOUSE_S3_ACCESS_KEY_ID",
    "LAKEHOUSE_S3_SECRET_ACCESS_KEY",
    "TRINO_SHARED_SECRET",
}


def test_trino_authenticates_with_a_password_file_over_tls_and_reads_only_its_secret():
    trino = load_yaml(DEPLOY / "trino" / "values.yaml")
    config = trino["server"]["config"]
    assert config["authenticationType"] == "PASSWORD"
    assert config["https"]["enabled"] is True
    (mount,) = trino["secretMounts"]
    assert config["https"]["keystore"]["path"].startswith(mount["path"] + "/")
    assert trino["auth"] == {"passwordAuthSecret": "trino-password-file"}
    # the shared secret between coordinator and workers that authentication requires
    assert (
        "internal-communication.shared-secret=${ENV:TRINO_SHARED_SECRET}"
        in (trino["additionalConfigProperties"])
    )
    assert trino["envFrom"] == [{"secretRef": {"name": "trino-lakehouse"}}]
    # every variable Trino's files reference is in its own Secret, and nothing else is
    catalog = (DEPLOY / "trino" / "lakehouse.properties").read_text()
    referenced = set(re.findall(r"\$\{ENV:(\w+)\}", catalog))
    referenced |= {
        ref for line in trino["additionalConfigProperties"] for ref in re.findall(
            r"\$\{ENV:(\w+)\}", line
        )
    }  # fmt: skip
    assert referenced == TRINO_SECRET_KEYS
    readme = (DEPLOY / "README.md").read_text()
    for key in TRINO_SECRET_KEYS:
        assert f"--from-file={key}=" in readme, f"README: create trino-lakehouse with {key}"
    pod = {
        "securityContext": trino["securityContext"],
        "containers": [{"name": "trino", "securityContext": trino["containerSecurityContext"]}],
    }
    assert not restricted_violations(pod), restricted_violations(pod)
    # the client side: dbt logs in over HTTPS on that port
    prod = deployment.settings_for("prod")
    assert prod.trino_port == config["https"]["port"]
    assert deployment.secret_keys("prod")["lakehouse-trino-client"] == ["LAKEHOUSE_TRINO_PASSWORD"]
    profile = load_yaml(PROJECT_ROOT / "dbt_project" / "profiles.yml")["lakehouse"]["outputs"]
    assert profile["trino"]["method"] == "ldap"  # dbt-trino's basic auth, always https
    assert "LAKEHOUSE_TRINO_PASSWORD" in profile["trino"]["password"]


def test_trino_chart_is_pinned_and_its_network_policies_admit_only_dbt():
    readme = (DEPLOY / "README.md").read_text()
    header = (DEPLOY / "trino" / "values.yaml").read_text()
    pinned = re.search(r"helm upgrade --install trino trino/trino --version (\S+)", header)
    assert pinned, "deploy/trino/values.yaml names the chart version"
    assert f"trino/trino --version {pinned.group(1)}" in readme
    assert re.search(r"dagster/dagster -n dagster --version \d+\.\d+\.\d+", readme)
    documents = [
        d for d in yaml.safe_load_all((DEPLOY / "trino" / "network-policies.yaml").read_text())
    ]
    for document in documents:
        validate_strictly(document, f"NetworkPolicy {document['metadata']['name']} (trino)")
    trino = next(d for d in documents if d["metadata"]["name"] == "trino")["spec"]
    (from_dagster,) = [
        r for r in trino["ingress"] if r["ports"] == [{"protocol": "TCP", "port": 8443}]
    ]
    (peer,) = from_dagster["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    assert _selects(peer["podSelector"], COMPONENTS["step pod"])
    assert not _selects(peer["podSelector"], COMPONENTS["code server"])
    assert not _selects(peer["podSelector"], COMPONENTS["executor"])


def test_dbt_trino_target_queries_that_catalog():
    trino = load_yaml(PROJECT_ROOT / "dbt_project" / "profiles.yml")["lakehouse"]["outputs"][
        "trino"
    ]
    assert "LAKEHOUSE_CATALOG_NAME" in trino["database"]
    assert "LAKEHOUSE_TRINO_HOST" in trino["host"]
    assert deployment.settings_for("prod").dbt_target == "trino"


# --- Spark ------------------------------------------------------------------------------


def test_spark_defaults_leave_settings_driven_keys_to_the_resource(monkeypatch):
    """The resource, under the prod environment, sets master and catalog; the file the rest."""
    from resources.spark import SparkResource

    literals, secrets = deployment.environment("prod")
    for variable, value in {**literals, **dict.fromkeys(secrets, "x")}.items():
        monkeypatch.setenv(variable, value)
    conf = SparkResource().conf()
    assert conf["spark.master"] == "k8s://https://kubernetes.default.svc:443"
    assert conf["spark.sql.catalog.lakehouse.uri"].startswith("jdbc:postgresql://")
    defaults = deployment.parse_spark_defaults(
        (DEPLOY / "spark" / "spark-defaults.conf").read_text()
    )
    overlap = set(defaults) & set(conf)
    assert not overlap, f"set these through settings / catalog_config instead: {overlap}"
    assert defaults["spark.kubernetes.container.image"] == "${env:SPARK_CONTAINER_IMAGE}"
    # client mode: only spark-submit's driver pods read driver-pod keys; the driver here is
    # the step pod, whose identity the resource sets (test below)
    assert not [
        k
        for k in defaults
        if k.startswith(("spark.kubernetes.driverEnv.", "spark.kubernetes.authenticate.driver."))
    ]
    assert defaults["spark.kubernetes.authenticate.executor.serviceAccountName"] == (
        "lakehouse-spark-executor"
    )
    assert defaults["spark.kubernetes.executor.disableConfigMap"] == "true"
    refs = [v for k, v in defaults.items() if ".secretKeyRef." in k]
    assert refs and all(ref.split(":")[0] in deployment.secret_keys("prod") for ref in refs)
    for ref in refs:
        secret, key = ref.split(":")
        assert key in deployment.secret_keys("prod")[secret]


def test_client_mode_driver_names_its_pod_and_address_from_the_downward_api(monkeypatch):
    """Under a k8s:// master the session conf carries POD_IP and POD_NAME; locally nothing."""
    from resources.spark import SparkClientModeError, SparkResource, client_mode_conf

    pod = {"POD_IP": "10.1.2.3", "POD_NAME": "dagster-step-abc"}
    assert client_mode_conf("k8s://https://kubernetes.default.svc:443", pod) == {
        "spark.driver.host": "10.1.2.3",
        "spark.kubernetes.driver.pod.name": "dagster-step-abc",
    }
    assert client_mode_conf("local[*]", pod) == {}
    literals, secrets = deployment.environment("prod")
    for variable, value in {**literals, **dict.fromkeys(secrets, "x")}.items():
        monkeypatch.setenv(variable, value)
    for variable, value in pod.items():
        monkeypatch.setenv(variable, value)
    conf = SparkResource().conf()
    assert conf["spark.kubernetes.driver.pod.name"] == "dagster-step-abc"
    assert conf["spark.driver.host"] == "10.1.2.3"
    assert conf["spark.sql.catalog.lakehouse.client.region"] == "us-east-1"
    assert conf["spark.sql.catalog.lakehouse.s3.endpoint"] == "http://minio.data.svc:9000"
    # without the pod's identity the session refuses to start, naming the profile
    monkeypatch.delenv("POD_NAME")
    monkeypatch.setattr("resources.spark.spark_jars", lambda _settings: None)
    monkeypatch.setattr(
        SparkResource,
        "conf",
        lambda self, jars=None: {
            "spark.master": "k8s://https://kubernetes.default.svc:443",
            "spark.driver.host": "x",
        },
    )
    with pytest.raises(SparkClientModeError, match="spark.kubernetes.driver.pod.name.*`spark`"):
        SparkResource()._create()


def test_executor_pod_template_is_a_valid_restricted_pod_without_a_token():
    template = load_yaml(DEPLOY / "spark" / "executor-pod-template.yaml")
    validate_strictly(template, "deploy/spark/executor-pod-template.yaml")
    spec = template["spec"]
    assert not restricted_violations(spec), restricted_violations(spec)
    assert spec["automountServiceAccountToken"] is False
    defaults = deployment.parse_spark_defaults(
        (DEPLOY / "spark" / "spark-defaults.conf").read_text()
    )
    (container,) = spec["containers"]
    assert container["name"] == defaults["spark.kubernetes.executor.podTemplateContainerName"]
    # the template's user is the image's
    image_user = re.search(r"useradd --uid (\d+)", DOCKERFILE.read_text()).group(1)
    assert str(spec["securityContext"]["runAsUser"]) == image_user


# --- least privilege: accounts, Roles, Secrets, NetworkPolicies, Pod Security ------------------


def k8s_documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


@pytest.mark.parametrize(
    "name",
    [
        "namespace.yaml",
        "rbac.yaml",
        "network-policies.yaml",
        "provision-job.yaml",
        "migrate-job.yaml",
    ],
)
def test_k8s_manifests_are_valid_kubernetes(name):
    for document in k8s_documents(name):
        validate_strictly(document, f"{document['kind']} {document['metadata']['name']} in {name}")
        assert document["metadata"].get("namespace", NAMESPACE) == NAMESPACE


def test_namespace_enforces_pod_security_restricted():
    (namespace,) = k8s_documents("namespace.yaml")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def rbac() -> tuple[dict, dict, dict]:
    documents = k8s_documents("rbac.yaml")
    accounts = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServiceAccount"}
    roles = {d["metadata"]["name"]: d["rules"] for d in documents if d["kind"] == "Role"}
    bound: dict[str, set[str]] = {}
    for binding in (d for d in documents if d["kind"] == "RoleBinding"):
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE
            bound.setdefault(subject["name"], set()).add(binding["roleRef"]["name"])
    return accounts, roles, bound


def test_each_account_has_exactly_the_rules_it_needs(values, user_deployment):
    accounts, roles, bound = rbac()
    control_plane = values["serviceAccount"]["name"]
    assert values["serviceAccount"] == {"create": True, "name": control_plane}
    assert "serviceAccountName" not in values["global"]  # it would override every account
    assert user_deployment["serviceAccount"] == {"name": control_plane}  # the code server
    # the account the code location gives its runs (created here, with its Role)
    assert values["dagster-user-deployments"]["serviceAccount"] == {
        "create": False,
        "name": "lakehouse-run",
    }
    assert values["rbacEnabled"] is False  # the chart's Roles allow "*" on jobs and pods
    assert values["dagster-user-deployments"]["rbacEnabled"] is False
    assert set(accounts) == {
        "lakehouse-run", "lakehouse-spark-driver", "lakehouse-spark-executor",
        "lakehouse-provision", "lakehouse-metrics",
    }  # fmt: skip
    # what dagster-k8s's client calls to launch, watch and stop a Job (daemon, run pods)
    assert roles["lakehouse-job-launcher"] == [
        {
            "apiGroups": ["batch"],
            "resources": ["jobs"],
            "verbs": ["create", "list", "delete"],
        },
        {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ]
    # a client-mode Spark driver manages executor pods and nothing else
    assert roles["lakehouse-spark-driver"] == [
        {
            "apiGroups": [""],
            "resources": ["pods"],
            "verbs": ["create", "get", "list", "watch", "delete", "deletecollection"],
        }
    ]
    assert bound == {
        control_plane: {"lakehouse-job-launcher"},
        "lakehouse-run": {"lakehouse-job-launcher"},
        "lakehouse-spark-driver": {"lakehouse-spark-driver"},
    }
    # accounts without a Role carry no token at all
    for name in ("lakehouse-spark-executor", "lakehouse-provision", "lakehouse-metrics"):
        assert accounts[name]["automountServiceAccountToken"] is False
    spark = deployment.parse_spark_defaults((DEPLOY / "spark" / "spark-defaults.conf").read_text())
    assert spark["spark.kubernetes.authenticate.executor.serviceAccountName"] in accounts
    assert PROFILES["spark"].service_account == "lakehouse-spark-driver"


def test_dagster_k8s_calls_only_what_the_job_launcher_role_allows():
    """Every Kubernetes API call in dagster-k8s's client maps to a rule of the Role."""
    import inspect

    import dagster_k8s.client

    source = inspect.getsource(dagster_k8s.client)
    calls = set(re.findall(r"\.(?:batch_api|core_api)\.(\w+)\(", source))
    allowed = {
        "create_namespaced_job": ("jobs", "create"),
        "read_namespaced_job_status": ("jobs/status", "get"),
        "list_namespaced_job": ("jobs", "list"),
        "delete_namespaced_job": ("jobs", "delete"),
        "read_namespaced_pod": ("pods", "get"),
        "list_namespaced_pod": ("pods", "list"),
        "delete_namespaced_pod": ("pods", "delete"),
        "read_namespaced_pod_log": ("pods/log", "get"),
        "list_namespaced_event": ("events", "list"),
    }
    assert calls <= set(allowed), calls - set(allowed)
    _, roles, _ = rbac()
    granted = {
        (resource, verb)
        for rule in roles["lakehouse-job-launcher"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {allowed[call] for call in calls} == granted  # nothing granted that is not used


RESTRICTED_CAPABILITIES = {"NET_BIND_SERVICE"}


def restricted_violations(pod_spec: dict) -> list[str]:
    """What Pod Security "restricted" refuses in a pod spec (camelCase, as the API reads it)."""
    problems = []
    pod = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(flag)
    for volume in pod_spec.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"hostPath volume {volume['name']}")
    if pod.get("runAsUser") == 0:
        problems.append("pod runAsUser 0")
    containers = [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser", pod.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - RESTRICTED_CAPABILITIES:
            problems.append(f"{name}: adds capabilities")
        seccomp = (sc.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp}")
    return problems


def test_restricted_check_catches_what_the_api_server_would_refuse():
    assert restricted_violations({"containers": [{"name": "c"}]}) == [
        "c: allowPrivilegeEscalation is not false",
        "c: runAsNonRoot is not true",
        "c: capabilities do not drop ALL",
        "c: seccompProfile is None",
    ]


def chart_pods(values: dict, user_deployment: dict) -> dict[str, dict]:
    """The pod specs the chart renders for webserver, daemon and code server, reduced to what
    Pod Security reads: its templates put podSecurityContext on the pod, securityContext on
    the one container, and add the check-db-ready init container (postgres image, no security
    context) unless checkDbReadyInitContainer is false."""
    pods = {}
    for name, component in (
        ("webserver", values["dagsterWebserver"]),
        ("daemon", values["dagsterDaemon"]),
    ):
        init = [] if component.get("checkDbReadyInitContainer") is False else [
            {"name": "check-db-ready"}
        ]  # fmt: skip
        pods[name] = {
            "securityContext": component.get("podSecurityContext", {}),
            "initContainers": init,
            "containers": [{"name": name, "securityContext": component.get("securityContext")}],
        }
    pods["code server"] = {
        "securityContext": user_deployment["podSecurityContext"],
        "containers": [{"name": "dagster", "securityContext": user_deployment["securityContext"]}],
    }
    return pods


def test_every_pod_of_the_chart_is_restricted(values, user_deployment):
    for name, pod in chart_pods(values, user_deployment).items():
        assert not restricted_violations(pod), (name, restricted_violations(pod))
    # the control plane runs the project's image, whose user the contexts name
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"] == user_deployment["image"], component
    # without capabilities a non-root server cannot bind a port below 1024
    webserver = values["dagsterWebserver"]
    assert webserver["service"]["port"] >= 1024
    assert webserver["readinessProbe"]["httpGet"]["port"] == webserver["service"]["port"]
    assert user_deployment["port"] >= 1024
    ingress = policies()["webserver-ingress"]["ingress"]
    assert [p["port"] for rule in ingress for p in rule["ports"]] == [webserver["service"]["port"]]
    assert f"svc/lakehouse-dagster-webserver 3000:{webserver['service']['port']}" in (
        (DEPLOY / "README.md").read_text()
    )


def test_provision_and_migrate_jobs_are_restricted_and_read_only_their_secrets(user_deployment):
    image = f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    accounts, _, bound = rbac()
    expected = {
        "provision-job.yaml": (
            ["python", "-m", "lakehouse.cli", "provision"],
            {"lakehouse-catalog", "lakehouse-s3"},
        ),
        "migrate-job.yaml": (["dagster", "instance", "migrate"], {"dagster-postgresql-secret"}),
    }
    for name, (args, secrets) in expected.items():
        (job,) = k8s_documents(name)
        pod = job["spec"]["template"]["spec"]
        assert not restricted_violations(pod), (name, restricted_violations(pod))
        (container,) = pod["containers"]
        assert container["image"] == image, name
        assert container["args"] == args, name
        read = {
            ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref
        }
        read |= {
            var["valueFrom"]["secretKeyRef"]["name"]
            for var in container.get("env", [])
            if "secretKeyRef" in var.get("valueFrom", {})
        }
        assert read == secrets, name
        # an account without a Role; provisioning mounts no token (migrate needs one, above)
        assert pod["serviceAccountName"] in accounts and pod["serviceAccountName"] not in bound
        assert pod["automountServiceAccountToken"] is (name == "migrate-job.yaml")
    (migrate,) = k8s_documents("migrate-job.yaml")
    volume = migrate["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == f"{FULLNAME}-instance"  # what the chart renders


# the executables the image provides (venv on PATH: dependencies only, no project scripts)
IMAGE_EXECUTABLES = {"python", "dagster"}


def test_jobs_and_the_exporter_start_executables_the_image_has():
    """Every container of the image that names its command starts something installed."""
    pods = [
        k8s_documents(n)[0]["spec"]["template"]["spec"]
        for n in ("provision-job.yaml", "migrate-job.yaml")
    ]
    pods.append(exporter()["Deployment"]["spec"]["template"]["spec"])
    for pod in pods:
        for container in pod["containers"]:
            argv = container.get("command") or container["args"]
            assert argv[0] in IMAGE_EXECUTABLES, (container["name"], argv)
    # why: the build stage installs pyproject's dependencies (-r), never the project itself
    assert "-r pyproject.toml" in DOCKERFILE.read_text()


def test_metrics_exporter_is_least_privileged(user_deployment):
    """deploy/metrics/exporter.yaml: valid, restricted, its own account without Role or
    token, the settings ConfigMap and only the Secrets of what it reads, on the port the
    Service, the ServiceMonitor and its NetworkPolicy name."""
    manifests = exporter()
    for kind in ("Deployment", "Service"):  # the ServiceMonitor is a CRD: no schema here
        validate_strictly(manifests[kind], f"{kind} lakehouse-metrics")
        assert manifests[kind]["metadata"]["namespace"] == NAMESPACE
    pod = manifests["Deployment"]["spec"]["template"]["spec"]
    assert not restricted_violations(pod), restricted_violations(pod)
    (container,) = pod["containers"]
    image = f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    assert container["image"] == image
    accounts, _, bound = rbac()
    assert pod["serviceAccountName"] == "lakehouse-metrics"
    assert pod["serviceAccountName"] in accounts and pod["serviceAccountName"] not in bound
    assert pod["automountServiceAccountToken"] is False
    assert accounts["lakehouse-metrics"]["automountServiceAccountToken"] is False
    maps = {r["configMapRef"]["name"] for r in container["envFrom"] if "configMapRef" in r}
    assert maps == {deployment.CONFIG_MAP_NAME}
    assert secrets_of(pod) == METRICS_SECRETS
    keys = deployment.secret_keys("prod")
    # every key of those Secrets is a setting the exporter's catalog and S3 clients use
    assert {k for s in METRICS_SECRETS for k in keys[s]} == {
        "LAKEHOUSE_CATALOG_PASSWORD",
        "LAKEHOUSE_S3_ACCESS_KEY_ID",
        "LAKEHOUSE_S3_SECRET_ACCESS_KEY",
    }
    command = container["command"]
    # what the image can start: it installs the dependencies (python, dagster), not the
    # project, so there is no `lakehouse` console script in it
    assert command[0] in IMAGE_EXECUTABLES and command[1:4] == ["-m", "lakehouse.cli", "metrics"]
    port = int(command[command.index("--port") + 1])
    assert port == METRICS_PORT
    assert [p["containerPort"] for p in container["ports"]] == [port]
    (service_port,) = manifests["Service"]["spec"]["ports"]
    assert service_port["port"] == port
    assert service_port["targetPort"] == container["ports"][0]["name"]
    (endpoint,) = manifests["ServiceMonitor"]["spec"]["endpoints"]
    assert endpoint["port"] == service_port["name"]


def policies() -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"] for d in k8s_documents("network-policies.yaml")}


def _selects(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


# each component's pod labels (chart, dagster-k8s, Spark, lakehouse) and where it must connect:
# (namespace or "pods:<component>", port)
COMPONENTS = {
    "webserver": {"component": "dagster-webserver"},
    "daemon": {"component": "dagster-daemon"},
    "code server": {"component": "user-deployments", "deployment": "lakehouse"},
    "run pod": {"app.kubernetes.io/component": "run_worker"},
    "step pod": {"app.kubernetes.io/component": "step_worker", PROFILE_LABEL: "dbt"},
    "spark driver": {"app.kubernetes.io/component": "step_worker", PROFILE_LABEL: "spark"},
    "executor": {"spark-role": "executor"},
    "provision": {"app.kubernetes.io/component": "provision"},
    "instance migrate": {"app.kubernetes.io/component": "instance-migrate"},
    # the labels deploy/metrics/exporter.yaml gives its pods
    "metrics exporter": exporter()["Deployment"]["spec"]["template"]["metadata"]["labels"],
}
API = ("api", 443)
# the alert webhook: an address outside the cluster (an ipBlock the operator fills in)
WEBHOOK = ("webhook", 443)
# pods of other namespaces, by (namespace, labels): the policies' placeholders for them
EXTERNAL_PODS = {"prometheus": ("monitoring", {"app.kubernetes.io/name": "prometheus"})}
METRICS_PORT = 9108
NEEDS = {
    "webserver": {("pods:code server", 3030), ("data", 5432), API},
    "daemon": {("pods:code server", 3030), ("data", 5432), API},
    "code server": {("data", 5432), ("data", 9000), ("kafka", 9092), WEBHOOK},
    "run pod": {("data", 5432), ("data", 9000), ("kafka", 9092), API, ("trino", 8443)},
    "step pod": {("data", 5432), ("data", 9000), ("kafka", 9092), ("trino", 8443)},
    "spark driver": {("data", 5432), ("data", 9000), API, ("pods:executor", 7079)},
    "executor": {("pods:spark driver", 7078), ("pods:spark driver", 7079), ("data", 9000),
                 ("pods:executor", 7079)},
    "provision": {("data", 5432), ("data", 9000), ("kafka", 9092)},
    "instance migrate": {("data", 5432)},
    "metrics exporter": {("data", 5432), ("data", 9000), ("kafka", 9092)},
}  # fmt: skip


def _allows(rules: list[dict], peer: tuple[str, int], direction: str) -> bool:
    """Whether one of the rules lets traffic to (egress) or from (ingress) ``peer`` through."""
    target, port = peer
    for rule in rules:
        if rule.get("ports") and port not in [p["port"] for p in rule["ports"]]:
            continue
        peers = rule.get("to" if direction == "egress" else "from")
        if not peers:
            return True  # any address on these ports (the API server's, which is no pod)
        for selector in peers:
            if "ipBlock" in selector:
                if target == "webhook":
                    return True
                continue
            if target in EXTERNAL_PODS:
                namespace, labels = EXTERNAL_PODS[target]
                if selector.get("namespaceSelector", {}).get("matchLabels") == {
                    "kubernetes.io/metadata.name": namespace
                } and _selects(selector.get("podSelector", {}), labels):
                    return True
                continue
            if target.startswith("pods:"):
                if "namespaceSelector" not in selector and _selects(
                    selector["podSelector"], COMPONENTS[target[5:]]
                ):
                    return True
            elif target != "api" and "podSelector" not in selector:
                names = selector["namespaceSelector"]["matchLabels"]
                if names == {"kubernetes.io/metadata.name": target}:
                    return True
    return False


def rules_for(labels: dict, direction: str) -> list[dict]:
    kind = direction.capitalize()
    return [
        rule
        for spec in policies().values()
        if kind in spec["policyTypes"] and _selects(spec["podSelector"], labels)
        for rule in spec.get(direction, [])
    ]


def test_network_policies_deny_by_default_and_allow_what_each_component_needs():
    default = policies()["default-deny"]
    assert default == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for name, labels in COMPONENTS.items():
        egress = rules_for(labels, "egress")
        assert _allows(egress, ("kube-system", 53), "egress") or any(
            r["to"][0].get("podSelector") == {"matchLabels": {"k8s-app": "kube-dns"}}
            for r in egress
        ), f"{name}: no DNS"
        for need in NEEDS[name]:
            assert _allows(egress, need, "egress"), f"{name} cannot reach {need}"
            target, port = need
            if target.startswith("pods:"):  # the other side must accept it too
                ingress = rules_for(COMPONENTS[target[5:]], "ingress")
                assert _allows(ingress, (f"pods:{name}", port), "ingress"), (
                    f"{target[5:]} refuses {name} on {port}"
                )
    # nothing reaches the API server that does not need it
    for name in (
        "code server", "step pod", "executor", "provision", "instance migrate",
        "metrics exporter",
    ):  # fmt: skip
        assert not _allows(rules_for(COMPONENTS[name], "egress"), API, "egress"), name
    # only the code server posts alerts (pods that reach the API server reach any address
    # on 443: the API rule has no peer, see network-policies.yaml)
    for name in (n for n in COMPONENTS if n != "code server" and API not in NEEDS[n]):
        assert not _allows(rules_for(COMPONENTS[name], "egress"), WEBHOOK, "egress"), name
    # the exporter: scraped by Prometheus on its port, by nobody else, on no other port
    metrics = rules_for(COMPONENTS["metrics exporter"], "ingress")
    assert _allows(metrics, ("prometheus", METRICS_PORT), "ingress")
    assert [p["port"] for rule in metrics for p in rule["ports"]] == [METRICS_PORT]
    assert not _allows(metrics, ("monitoring", METRICS_PORT), "ingress")  # not all of it
    for name in COMPONENTS:
        assert not _allows(metrics, (f"pods:{name}", METRICS_PORT), "ingress"), name
    assert not _allows(
        rules_for(COMPONENTS["metrics exporter"], "egress"), ("trino", 8443), "egress"
    )
    # nobody but the control plane reaches the code server; nobody reaches executors but Spark
    code_server = rules_for(COMPONENTS["code server"], "ingress")
    for name in ("run pod", "step pod", "executor"):
        assert not _allows(code_server, (f"pods:{name}", 3030), "ingress"), name
    executors = rules_for(COMPONENTS["executor"], "ingress")
    assert not _allows(executors, ("pods:step pod", 7079), "ingress")
    # the Spark ports the policies open are the ones Spark is told to use
    spark = deployment.parse_spark_defaults((DEPLOY / "spark" / "spark-defaults.conf").read_text())
    assert (spark["spark.driver.port"], spark["spark.blockManager.port"]) == ("7078", "7079")


def test_spark_profile_fits_the_prod_driver():
    """The driver pod's memory limit holds the JVM heap plus Spark's overhead (10%, >=384 MiB)."""
    heap = mebibytes(deployment.settings_for("prod").spark_driver_memory)
    needed = heap + max(384, heap // 10)
    assert mebibytes(PROFILES["spark"].memory_limit) >= needed


def mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", quantity).groups()
    factor = {"g": 1024, "gi": 1024, "m": 1, "mi": 1, "t": 1024 * 1024, "ti": 1024 * 1024}
    return int(number) * factor[unit.lower()]


# --- image ------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_copies_what_exists_runs_as_non_root_and_matches_the_project():
    text = DOCKERFILE.read_text()
    ignored = [
        line.strip()
        for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert {".git", ".venv", ".lakehouse", ".env"} <= set(ignored)
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, flags=re.M):
        *sources, _ = [part for part in line.split() if not part.startswith("--")]
        for source in sources:
            assert (PROJECT_ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
    users = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, flags=re.M)  # requires-python
    assert "openjdk-17-jre-headless" in text
    assert "iceberg-spark-runtime-3.5_2.12" in text  # pyspark is pinned to 3.5 (Scala 2.12)
    assert "--constraint requirements.lock" in text
    image_user = re.search(r"useradd --uid (\d+)", text).group(1)
    runs = load_yaml(DEPLOY / "dagster.yaml")["run_launcher"]["config"]["run_k8s_config"]
    assert str(runs["pod_spec_config"]["security_context"]["runAsUser"]) == image_user
    assert "SPARK_CONF_DIR=/opt/lakehouse/deploy/spark" in text


def deploy_paths_in_code(packages: tuple[str, ...] = ("lakehouse", "resources")) -> set[str]:
    """Paths under deploy/ that the image's Python code builds from ``PROJECT_ROOT``.

    Read from the source, not by importing it: every ``a / "b" / "c"`` chain whose left end
    is ``PROJECT_ROOT`` or a module-level name bound to such a chain is resolved to a path
    relative to the repository. A name that only serves as the base of longer paths (e.g.
    ``DEPLOY_DIR``) is dropped in favour of those paths: the directory itself is not read.
    """
    import ast

    def resolve(node, names: dict[str, str]) -> str | None:
        if isinstance(node, ast.Name):
            return names.get(node.id)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = resolve(node.left, names), resolve(node.right, names)
            if left is not None and right is not None and isinstance(node.right, ast.Constant):
                return f"{left}/{right}".lstrip("/")
        return None

    found: set[str] = set()
    for package in packages:
        for source in (PROJECT_ROOT / package).rglob("*.py"):
            tree = ast.parse(source.read_text())
            names = {"PROJECT_ROOT": ""}
            for statement in tree.body:  # module-level bindings first, in order
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target = statement.targets[0]
                    if isinstance(target, ast.Name):
                        value = resolve(statement.value, names)
                        if value is not None and not isinstance(statement.value, ast.Constant):
                            names[target.id] = value
            paths = {
                path
                for node in ast.walk(tree)
                if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
                for path in [resolve(node, names)]
                if path is not None and path.startswith("deploy/")
            }
            found |= {p for p in paths if not any(o.startswith(p + "/") for o in paths)}
    return found


def image_copies(text: str) -> list[str]:
    """The repository paths the runtime stage copies in (COPY without --from)."""
    runtime = text.rsplit("\nFROM ", 1)[1]
    copied = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", runtime, flags=re.M):
        *sources, _ = [part for part in line.split() if not part.startswith("--")]
        copied += [source.rstrip("/") for source in sources]
    return copied


def missing_from_image(read: set[str], copied: list[str]) -> set[str]:
    return {p for p in read if not any(p == c or p.startswith(c + "/") for c in copied)}


def test_the_image_holds_every_deploy_file_the_code_reads_at_run_time():
    """deploy/ is not copied whole; what the code opens from it in a pod must be. The alerts
    sensor reads environments.yaml on every tick: without it in the image each tick fails."""
    read = deploy_paths_in_code()
    assert "deploy/environments.yaml" in read  # the scan sees the alerts sensor's reader
    copied = image_copies(DOCKERFILE.read_text())
    missing = missing_from_image(read, copied)
    assert not missing, f"deploy/docker/Dockerfile: COPY {sorted(missing)} into the image"
    # the image as the deploy branch had it (deploy/spark only) is caught
    before = [c for c in copied if c != "deploy/environments.yaml"]
    assert missing_from_image(read, before) == {"deploy/environments.yaml"}
