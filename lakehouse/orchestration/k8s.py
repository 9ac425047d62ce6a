"""Kubernetes sizing of the work, and the executor that honours it.

On Kubernetes every step runs in its own pod, sized by the resource profile its asset
names in the ``dagster-k8s/config`` op tag. Sizing lives on the asset, not on a job,
because runs also start from sensors, the automation sensor and asset backfills, which
target assets rather than named jobs; only step pods see asset tags in every case. On a
laptop the steps run in one process and the tags are inert.

``dagster_k8s`` imports the Kubernetes client (about 1.5 s on 2 cores), so it is imported
only by a deployment that offers the k8s executor (``LAKEHOUSE_K8S_EXECUTOR``): its
config schema is the k8s executor's, which must be known when the code location loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import dagster as dg

K8S_CONFIG_TAG = "dagster-k8s/config"
PROFILE_LABEL = "lakehouse/profile"
# a job whose steps run in its run pod under the K8sRunLauncher (see ``run_pod_tags``)
EXECUTOR_TAG = "lakehouse/executor"
RUN_POD = "run_pod"
# the service account of Spark drivers' step pods (deploy/k8s/rbac.yaml: may manage pods)
SPARK_DRIVER_SERVICE_ACCOUNT = "lakehouse-spark-driver"


@dataclass(frozen=True)
class ResourceProfile:
    """Requests and limits of one kind of work.

    Memory is requested and limited: a step that outgrows its profile is killed and
    retried with a clear OOMKilled reason instead of starving its neighbours. CPU is
    requested but not limited, so a step may use a node's idle cores without being
    throttled.
    """

    cpu: str
    memory: str
    memory_limit: str
    env: tuple[dict[str, Any], ...] = field(default=())
    # the pod's service account when it is not the run and step pods' (deploy/k8s/rbac.yaml)
    service_account: str | None = None
    # local disk (TMPDIR) for work that spills instead of holding data in memory: the
    # scheduler places the pod where that much is free, and the kubelet evicts a pod that
    # outgrows its limit with a clear reason instead of filling the node's disk
    disk: str | None = None
    disk_limit: str | None = None

    def resources(self) -> dict[str, dict[str, str]]:
        requests = {"cpu": self.cpu, "memory": self.memory}
        limits = {"memory": self.memory_limit}
        if self.disk:
            requests["ephemeral-storage"] = self.disk
        if self.disk_limit:
            limits["ephemeral-storage"] = self.disk_limit
        return {"requests": requests, "limits": limits}


PROFILES: dict[str, ResourceProfile] = {
    # the run pod and any step without a profile: orchestration, metadata, small tables
    "light": ResourceProfile(cpu="250m", memory="512Mi", memory_limit="1Gi"),
    # one bounded batch from Kafka, S3 or the OLTP database, written as data files before
    # the commit; landing files are spooled to local disk as they stream from S3 (the file
    # being read and three fetched ahead: about LAKEHOUSE_LANDING_BATCH_BYTES, 1 GiB)
    "ingest": ResourceProfile(
        cpu="1", memory="2Gi", memory_limit="4Gi", disk="2Gi", disk_limit="8Gi"
    ),
    # silver builds in Arrow: an increment in memory; a typed table's full rebuild spills
    # its rows to local disk in key buckets (about the table's size, compressed)
    "arrow": ResourceProfile(
        cpu="1", memory="4Gi", memory_limit="8Gi", disk="4Gi", disk_limit="16Gi"
    ),
    # dbt-trino only sends SQL: the work happens in Trino
    "dbt": ResourceProfile(cpu="500m", memory="1Gi", memory_limit="2Gi"),
    # the Spark driver (client mode); executors are pods of their own, sized by
    # deploy/spark/spark-defaults.conf. The driver advertises its pod IP to them and names
    # its pod as their owner (resources/spark.py), and runs as the one account that may
    # start and stop executor pods.
    "spark": ResourceProfile(
        cpu="1",
        memory="6Gi",
        memory_limit="6Gi",
        env=(
            {"name": "POD_IP", "value_from": {"field_ref": {"field_path": "status.podIP"}}},
            {"name": "POD_NAME", "value_from": {"field_ref": {"field_path": "metadata.name"}}},
        ),
        service_account=SPARK_DRIVER_SERVICE_ACCOUNT,
    ),
}


def k8s_config(profile: str) -> dict[str, Any]:
    """The ``dagster-k8s/config`` value of a profile: container resources and environment,
    a pod label, and the service account where the profile has its own."""
    try:
        spec = PROFILES[profile]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown resource profile {profile!r}; known: {known}") from None
    container: dict[str, Any] = {"resources": spec.resources()}
    if spec.env:
        container["env"] = [dict(var) for var in spec.env]
    config: dict[str, Any] = {
        "container_config": container,
        "pod_template_spec_metadata": {"labels": {PROFILE_LABEL: profile}},
    }
    if spec.service_account:
        config["pod_spec_config"] = {"service_account_name": spec.service_account}
    return config


def k8s_tags(profile: str) -> dict[str, str]:
    """Op tags that size an asset's step pod on Kubernetes: ``op_tags=k8s_tags("spark")``."""
    return {K8S_CONFIG_TAG: json.dumps(k8s_config(profile), sort_keys=True)}


def run_pod_tags(profile: str) -> dict[str, str]:
    """Job tags: every step of the job runs in the run's own pod, sized by ``profile``.

    For jobs of one short step that a sensor launches every few seconds (ingestion): a
    pod per step would add a second pod start and code location load (measured locally
    with ``bench.step_overhead``) to a step of two seconds, on the path from an event to
    gold. Jobs whose steps differ in size (silver in Arrow, gold in dbt, Spark) keep a
    pod per step, each sized by its asset.
    """
    return {EXECUTOR_TAG: RUN_POD, **k8s_tags(profile)}


def _steps_in_run_pod(init_context: dg.InitExecutorContext) -> bool:
    job = getattr(init_context, "job", None)
    tags = job.get_definition().tags if job is not None else {}
    return tags.get(EXECUTOR_TAG) == RUN_POD


def lakehouse_executor(k8s: bool) -> dg.ExecutorDefinition:
    """The code location's executor, named ``lakehouse`` in every deployment.

    ``k8s``: the deployment offers the k8s executor (``LAKEHOUSE_K8S_EXECUTOR``, set in
    prod): execution config is the k8s executor's (``execution: config: {max_concurrent:
    ...}``), and each run picks its executor from the instance it lands on. Otherwise
    every run executes in one process (execution config: ``retries``), and neither
    dagster_k8s nor the Kubernetes client is imported.
    """
    return _k8s_or_in_process() if k8s else _in_process


@dg.executor(
    name="lakehouse",
    config_schema=dg.in_process_executor.config_schema.as_field(),
    requirements=dg.multiple_process_executor_requirements(),
)
def _in_process(init_context: dg.InitExecutorContext) -> dg.Executor:
    """One process per run (a process per step costs ~15 s of imports on 2 cores)."""
    return dg.in_process_executor.executor_creation_fn(init_context)


@cache
def _k8s_or_in_process() -> dg.ExecutorDefinition:
    from dagster_k8s import K8sRunLauncher, k8s_job_executor

    @dg.executor(
        name="lakehouse",
        config_schema=k8s_job_executor.config_schema.as_field(),
        requirements=dg.multiple_process_executor_requirements(),
    )
    def _executor(init_context: dg.InitExecutorContext) -> dg.Executor:
        """One pod per step under the ``K8sRunLauncher``, one process per run anywhere else.

        Decided when the run starts, from the instance it runs on, so the same code
        location serves a run launched on the cluster and one started by hand elsewhere;
        locally only ``retries`` of the execution config applies. A job tagged with
        ``run_pod_tags`` runs its steps in its run pod on the cluster too.
        """
        launcher = init_context.instance.run_launcher
        if isinstance(launcher, K8sRunLauncher) and not _steps_in_run_pod(init_context):
            return k8s_job_executor.executor_creation_fn(init_context)
        return dg.in_process_executor.executor_creation_fn(init_context)

    return _executor
