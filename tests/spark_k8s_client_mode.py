"""A Spark driver in client mode on a stand-in Kubernetes API server (a script).

No cluster runs here, so this plays the API server for one Spark application, the way a
Spark step pod would meet it in production:
- the driver is given the production Spark defaults (deploy/spark/spark-defaults.conf:
  executor account, pod template, no ConfigMap, ...), a ``k8s://`` master pointing here, and
  the pod identity ``resources.spark.client_mode_conf`` derives from POD_IP and POD_NAME;
- the server answers with the Role of the driver's account from deploy/k8s/rbac.yaml: a
  request that Role does not allow gets 403, as the real API server would answer it;
- an executor pod the driver creates is "scheduled" by running its container as the image
  would: ``deploy/docker/entrypoint.sh`` with the pod's args and its environment (downward
  API fields resolved), nothing else from the test.
The executor must register and run a JVM and a Python stage. Prints one JSON line (what was
created, requested and refused); tests/test_spark_image.py reads it. Differences from a
cluster: one executor, ephemeral ports instead of 7078/7079 (parallel test runs), the image
tag and template path local, and pod status answered by polling (the watcher is off: the
stand-in serves no watch streams).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
NAMESPACE = "dagster"
DRIVER_POD = "dagster-step-0123abcd"
IMAGE = "registry.example.com/lakehouse/user-code:test"


def driver_role() -> set[tuple[str, str]]:
    """(resource, verb) pairs the Spark driver's Role grants."""
    documents = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "rbac.yaml").read_text())
    (role,) = [d for d in documents if d["kind"] == "Role" and d["metadata"]["name"] == (
        "lakehouse-spark-driver"
    )]  # fmt: skip
    return {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}


class StandInApiServer:
    def __init__(self, logs: Path, spark_home: str) -> None:
        self.allowed = driver_role()
        self.logs, self.spark_home = logs, spark_home
        self.pods: dict[str, dict] = {
            DRIVER_POD: {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": DRIVER_POD, "namespace": NAMESPACE, "uid": str(uuid.uuid4())},
                "spec": {"containers": [{"name": "dagster"}]},
                "status": {"phase": "Running", "podIP": "127.0.0.1"},
            }
        }
        self.created: list[dict] = []
        self.requests: list[tuple[str, str, int]] = []
        self.processes: dict[str, subprocess.Popen] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, verb: str) -> None:
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                query = parse_qs(url.query)
                body = b""
                if int(self.headers.get("Content-Length") or 0):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                collection = parts[-1] in ("pods", "services", "configmaps")
                resource = parts[-1] if collection else parts[-2]
                if verb == "get" and collection:
                    verb = "watch" if query.get("watch") == ["true"] else "list"
                if verb == "delete" and collection:
                    verb = "deletecollection"
                code, answer = server.handle(verb, resource, parts, query, body)
                server.requests.append((verb, resource, code))
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("get")

            def do_POST(self) -> None:
                self._answer("create")

            def do_DELETE(self) -> None:
                self._answer("delete")

            def do_PATCH(self) -> None:
                self._answer("patch")

            def do_PUT(self) -> None:
                self._answer("update")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def handle(self, verb, resource, parts, query, body) -> tuple[int, dict]:
        if (resource, verb) not in self.allowed:
            return 403, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "Forbidden", "code": 403}  # fmt: skip
        if verb in ("list", "watch"):
            items = list(self.pods.values())
            for term in query.get("labelSelector", [""])[0].split(","):
                if "=" in term and "!" not in term:
                    key, value = term.split("=", 1)
                    items = [p for p in items if p["metadata"].get("labels", {}).get(key) == value]
            for term in query.get("fieldSelector", [""])[0].split(","):
                if term.startswith("metadata.name="):
                    items = [p for p in items if p["metadata"]["name"] == term.split("=", 1)[1]]
            meta = {"resourceVersion": "1"}
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": meta, "items": items}
        if verb == "get":
            pod = self.pods.get(parts[-1])
            return (200, pod) if pod else (404, {"kind": "Status", "code": 404})
        if verb == "create":
            pod = json.loads(body)
            self.created.append(json.loads(body))
            pod["metadata"].update(uid=str(uuid.uuid4()), namespace=NAMESPACE)
            pod["status"] = {"phase": "Running", "podIP": "127.0.0.1"}
            self.pods[pod["metadata"]["name"]] = pod
            self.run_container(pod)
            return 201, pod
        if verb in ("delete", "deletecollection"):
            names = [parts[-1]] if verb == "delete" else [n for n in self.pods if n != DRIVER_POD]
            for name in names:
                self.pods.pop(name, None)
            return 200, {"kind": "Status", "status": "Success"}
        return 405, {"kind": "Status", "code": 405}

    def run_container(self, pod: dict) -> None:
        """What the kubelet would start: the image's entrypoint, the pod's args and env."""
        (container,) = pod["spec"]["containers"]
        fields = {"status.podIP": "127.0.0.1", "metadata.name": pod["metadata"]["name"]}
        env = {
            # the image's own environment (deploy/docker/Dockerfile ENV), pyspark's home here
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            "SPARK_HOME": self.spark_home,
            "HOSTNAME": pod["metadata"]["name"],
        }
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"] or ""
            elif "fieldRef" in var.get("valueFrom", {}):
                env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
        name = pod["metadata"]["name"]
        self.processes[name] = subprocess.Popen(
            [str(ENTRYPOINT), *container.get("args", [])],
            env=env,
            stdout=(self.logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
        )


def main() -> None:
    import pyspark

    from lakehouse.deployment import parse_spark_defaults
    from resources.spark import client_mode_conf

    logs = Path(sys.argv[1])
    spark_home = str(Path(pyspark.__file__).parent)
    api = StandInApiServer(logs, spark_home)
    conf = parse_spark_defaults((ROOT / "deploy" / "spark" / "spark-defaults.conf").read_text())
    conf.update(
        {
            "spark.kubernetes.container.image": IMAGE,
            "spark.kubernetes.executor.podTemplateFile": str(
                ROOT / "deploy" / "spark" / "executor-pod-template.yaml"
            ),
            "spark.executor.instances": "1",
            "spark.executor.cores": "1",
            "spark.executor.memory": "512m",
            "spark.kubernetes.executor.request.cores": "100m",
            "spark.kubernetes.executor.enableApiWatcher": "false",
            "spark.kubernetes.executor.apiPollingInterval": "1s",
            "spark.driver.port": "0",
            "spark.blockManager.port": "0",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            **client_mode_conf("k8s://" + api.url, {"POD_IP": "127.0.0.1", "POD_NAME": DRIVER_POD}),
        }
    )
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("k8s://" + api.url)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        sc = spark.sparkContext
        deadline = time.monotonic() + 120
        while sc._jsc.sc().getExecutorIds().size() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("no executor registered")
            time.sleep(0.5)
        registered = sc._jsc.sc().getExecutorIds().mkString(",").split(",")
        python_sum = sc.parallelize(range(100), 4).map(lambda x: x * 2).sum()
        jvm_sum = spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"]
    finally:
        spark.stop()
    exits = {name: process.wait(timeout=60) for name, process in api.processes.items()}
    print(
        json.dumps(
            {
                "registered": registered,
                "python_sum": python_sum,
                "jvm_sum": jvm_sum,
                "created": api.created,
                "driver_uid": api.pods[DRIVER_POD]["metadata"]["uid"],
                "requests": sorted(set(map(tuple, api.requests))),
                "left": sorted(api.pods),
                "exits": exits,
            }
        )
    )
    api.httpd.shutdown()


if __name__ == "__main__":
    main()
