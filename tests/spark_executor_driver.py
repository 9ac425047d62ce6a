"""A Spark driver whose executor is started through the image's entrypoint (a script).

Stands in for Spark on Kubernetes in client mode, where no cluster runs: a standalone
master gives the driver a coarse-grained scheduler (the same one the Kubernetes backend
extends) with no workers of its own, and the one executor is started the way Spark's
Kubernetes backend starts an executor pod: ``deploy/docker/entrypoint.sh executor`` with
the description in environment variables (driver URL, id, cores, memory, app id, pod IP and
name, JVM options as ``SPARK_JAVA_OPT_<n>``). The executor must register and run a JVM
stage and a Python stage. Prints one JSON line; tests/test_spark_image.py reads it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def executor_env(spark_home: str, conf: dict[str, str], app_id: str) -> dict[str, str]:
    """What Spark's Kubernetes backend puts in an executor pod's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env.update(
        SPARK_HOME=spark_home,
        SPARK_DRIVER_URL=f"spark://CoarseGrainedScheduler@127.0.0.1:{conf['spark.driver.port']}",
        SPARK_EXECUTOR_ID="7",
        SPARK_EXECUTOR_CORES="1",
        SPARK_EXECUTOR_MEMORY="512m",
        SPARK_APPLICATION_ID=app_id,
        SPARK_EXECUTOR_POD_IP="127.0.0.1",
        SPARK_EXECUTOR_POD_NAME="lakehouse-exec-7",
        SPARK_RESOURCE_PROFILE_ID="0",
    )
    options = shlex.split(conf.get("spark.executor.extraJavaOptions", ""))
    options.append(f"-Dspark.driver.port={conf['spark.driver.port']}")
    # eleven or more, so that index order (_10 after _9) matters
    assert len(options) > 10, options
    for index, option in enumerate(options):
        env[f"SPARK_JAVA_OPT_{index}"] = option
    return env


def main() -> None:
    import pyspark

    spark_home = str(Path(pyspark.__file__).parent)
    logs = Path(sys.argv[1])
    master_port = free_port()
    master = subprocess.Popen(
        [
            "java", "-cp", f"{spark_home}/jars/*", "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(master_port), "--webui-port", str(free_port()),
        ],
        stdout=(logs / "master.log").open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    executor = None
    try:
        wait_for_port(master_port, 60)
        os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
        os.environ["PYSPARK_PYTHON"] = sys.executable
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master(f"spark://127.0.0.1:{master_port}")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        sc = spark.sparkContext
        conf = dict(sc.getConf().getAll())
        executor = subprocess.Popen(
            [str(ENTRYPOINT), "executor"],
            env=executor_env(spark_home, conf, sc.applicationId),
            stdout=(logs / "executor.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while sc._jsc.sc().getExecutorIds().size() == 0:
            if executor.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the executor did not register (exit {executor.poll()})")
            time.sleep(0.5)
        registered = sc._jsc.sc().getExecutorIds().mkString(",").split(",")
        cmdline = Path(f"/proc/{executor.pid}/cmdline").read_bytes().split(b"\0")
        python_sum = sc.parallelize(range(100), 4).map(lambda x: x * 2).sum()
        jvm_sum = spark.range(1000).selectExpr("sum(id) AS s").collect()[0]["s"]
        spark.stop()
        exit_code = executor.wait(timeout=60)
        print(
            json.dumps(
                {
                    "registered": registered,
                    "cmdline": [part.decode() for part in cmdline if part],
                    "python_sum": python_sum,
                    "jvm_sum": jvm_sum,
                    "executor_exit": exit_code,
                }
            )
        )
    finally:
        for process in (executor, master):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


if __name__ == "__main__":
    main()
