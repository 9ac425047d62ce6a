#!/usr/bin/env bash
# Entrypoint of the user-code image: one image for the code server, run pods, step pods,
# Spark drivers and Spark executors.
#
# - Dagster gives its pods a command (`dagster api grpc ...`, `dagster api execute_run`,
#   `dagster api execute_step`) as container args: run it as is.
# - Spark's Kubernetes backend (client mode: the driver is a step pod) starts executor
#   pods from this image with the single argument `executor` and describes the executor
#   only through environment variables (driver URL, executor id, cores, memory, app id,
#   pod IP and name, JVM options as SPARK_JAVA_OPT_<n>). Nothing in a Python image
#   understands that, so this script turns them into the executor JVM's command line.
# tests/test_spark_executor.py runs this script as an executor against a local driver.
set -euo pipefail

if [[ "${1:-}" != "executor" ]]; then
    exec "$@"
fi
shift

missing=()
for name in SPARK_HOME SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES \
            SPARK_EXECUTOR_MEMORY SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP; do
    [[ -n "${!name:-}" ]] || missing+=("$name")
done
if (( ${#missing[@]} )); then
    echo "entrypoint: executor needs ${missing[*]} (Spark's Kubernetes backend sets them)" >&2
    exit 64
fi

# JVM options in index order (_10 after _9): the driver's spark.executor.extraJavaOptions,
# Java 17's --add-opens among them, and the startup confs (ports, auth) it passes this way
java_opts=()
while IFS= read -r name; do
    java_opts+=("${!name}")
done < <(compgen -e | grep -E '^SPARK_JAVA_OPT_[0-9]+$' | sort -t_ -k4 -n || true)

# spark.executor.extraClassPath arrives as SPARK_CLASSPATH; the conf directory first so the
# image's log4j2.properties applies; then every jar of pyspark (Iceberg's runtime and AWS
# bundle included: the image copies them there)
classpath="${SPARK_CONF_DIR:+$SPARK_CONF_DIR:}${SPARK_CLASSPATH:+$SPARK_CLASSPATH:}${SPARK_HOME}/jars/*"

exec "${JAVA_HOME:+$JAVA_HOME/bin/}java" \
    "${java_opts[@]}" \
    "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
    -cp "$classpath" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" \
    --executor-id "$SPARK_EXECUTOR_ID" \
    --cores "$SPARK_EXECUTOR_CORES" \
    --app-id "$SPARK_APPLICATION_ID" \
    --hostname "$SPARK_EXECUTOR_POD_IP" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
    --podName "${SPARK_EXECUTOR_POD_NAME:-$HOSTNAME}" \
    "$@"
