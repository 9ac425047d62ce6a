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
    assert load_yaml(DEPLOY / "dagster.yaml") == render_instance(values)


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
        "service_account_name": values["global"]["serviceAccountName"],
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": f"{FULLNAME}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        **({"labels": k8s["labels"]} if k8s.get("labels") else {}),
        **({"resources": k8s["resources"]} if k8s.get("resources") else {}),
        **({"fail_pod_on_run_failure": True} if k8s.get("failPodOnRunFailure") else {}),
        **({"security_context": k8s["securityContext"]} if k8s.get("securityContext") else {}),
    }
    for unused in ("envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes"):
        assert not k8s.get(unused), f"render_instance does not render {unused} yet"
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    retries = values["dagsterDaemon"]["runRetries"]
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
            },
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
        "volumeMounts", "volumes", "schedulerName",
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


def test_helm_values_pass_the_environment_and_its_secrets_to_every_pod(values, user_deployment):
    config_maps = [ref["name"] for ref in user_deployment["envConfigMaps"]]
    secrets = [ref["name"] for ref in user_deployment["envSecrets"]]
    assert deployment.CONFIG_MAP_NAME in config_maps
    assert set(deployment.secret_keys("prod")) <= set(secrets)
    image = f"{user_deployment['image']['repository']}:{user_deployment['image']['tag']}"
    env = {var["name"]: var for var in user_deployment["env"]}
    assert env["SPARK_CONTAINER_IMAGE"]["value"] == image
    pods_sa = values["global"]["serviceAccountName"]
    spark = deployment.parse_spark_defaults((DEPLOY / "spark" / "spark-defaults.conf").read_text())
    assert spark["spark.kubernetes.authenticate.driver.serviceAccountName"] == pods_sa


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
            "service_account_name": values["global"]["serviceAccountName"],
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
    sources = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert deployment.CONFIG_MAP_NAME in sources and "lakehouse-secrets" in sources
    env = {var["name"]: var for var in container["env"]}
    password = env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password["name"] == "dagster-postgresql-secret"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "lakehouse-secrets"
    assert all("value" not in var or "SECRET" not in var["name"] for var in container["env"])
    assert container["resources"] == PROFILES[profile].resources()
    assert container["securityContext"]["runAsNonRoot"] is True
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
    assert manifest["spec"]["template"]["spec"]["serviceAccountName"] == "lakehouse-dagster"


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
}


@pytest.mark.postgres
def test_every_step_job_is_valid_kubernetes_and_sized_by_its_asset(
    prod_instance, defs, code_origin
):
    """Steps of a whole-graph backfill run: heavy assets get their profile, checks `light`."""
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
    assert manifest["spec"]["template"]["metadata"]["labels"][PROFILE_LABEL] == "spark"


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
    assert capsys.readouterr().out.startswith("lakehouse-secrets: LAKEHOUSE_CATALOG_PASSWORD ")


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
    assert defaults["spark.driver.host"] == "${env:POD_IP}"
    refs = [v for k, v in defaults.items() if ".secretKeyRef." in k]
    assert refs and all(ref.split(":")[0] in deployment.secret_keys("prod") for ref in refs)
    for ref in refs:
        secret, key = ref.split(":")
        assert key in deployment.secret_keys("prod")[secret]


def test_spark_rbac_is_valid_and_binds_the_pods_service_account(values):
    documents = list(yaml.safe_load_all((DEPLOY / "spark" / "rbac.yaml").read_text()))
    for document in documents:
        validate_strictly(document, f"{document['kind']} in deploy/spark/rbac.yaml")
    binding = next(d for d in documents if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["name"] == values["global"]["serviceAccountName"]
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    role = next(d for d in documents if d["kind"] == "Role")
    assert "pods" in role["rules"][0]["resources"] and "create" in role["rules"][0]["verbs"]


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
    runner = load_yaml(DEPLOY / "dagster.yaml")["run_launcher"]["config"]["security_context"]
    assert str(runner["runAsUser"]) == image_user
    assert "SPARK_CONF_DIR=/opt/lakehouse/deploy/spark" in text
