"""`lakehouse`: start the embedded local stack, load the demo, run the graph, open the UI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path
from typing import Annotated

import typer

from lakehouse.settings import PROJECT_ROOT, LakehouseSettings, get_settings
from lakehouse.stack import services as stack

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def start_stack(settings: LakehouseSettings) -> list[str]:
    """Start what is not running yet; return the names of the services this call started."""
    started: list[str] = []
    try:
        for service in stack.services(settings):
            if stack.start(service, settings):
                started.append(service.name)
                typer.echo(f"  started {service.name} on 127.0.0.1:{service.port}")
            else:
                typer.echo(f"  {service.name} already running on 127.0.0.1:{service.port}")
        from lakehouse.stack.provision import provision

        provision(settings)
    except stack.StackError as exc:
        stop_stack(settings, started)
        _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C (or SIGTERM/SIGHUP in a session) half-way up
        stop_stack(settings, started)
        raise
    return started


def stop_stack(settings: LakehouseSettings, names: list[str] | None = None) -> None:
    for service in stack.services(settings):
        if (names is None or service.name in names) and stack.stop(service, settings):
            typer.echo(f"  stopped {service.name}")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextmanager
def stack_session(settings: LakehouseSettings):
    """Services needed for the block; stops those it started, leaves running ones alone.

    SIGTERM and SIGHUP (a closed terminal) unwind like Ctrl-C, so nothing is orphaned.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    started = start_stack(settings)
    try:
        yield started
    finally:
        stop_stack(settings, started)


def prepare_dbt() -> None:
    """Write dbt's manifest, which the gold assets are built from at import."""
    from lakehouse.dbt.project import prepare_manifest

    prepare_manifest()


def prepare_dagster_home(settings: LakehouseSettings) -> None:
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", settings.dagster_home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)


def restore_demo_data(settings: LakehouseSettings, started: list[str]) -> None:
    """Fresh in-memory services lost the demo's inputs; bronze still holds them."""
    if not started:
        return
    from lakehouse.demo.load import restore_demo

    restored = restore_demo(settings)
    if restored is not None:
        typer.echo(
            f"  restored the demo data on the fresh {' and '.join(started)} (memory storage): "
            f"{restored.events_produced} events, {restored.changes_produced} change events, "
            f"{restored.files_uploaded} files, at the same offsets as the demo's first publish"
        )


@app.command()
def up() -> None:
    """Start Tansu (Kafka) and moto (S3), create topics, bucket and namespaces."""
    settings = get_settings()
    restore_demo_data(settings, start_stack(settings))
    typer.echo(f"stack up; state in {settings.state_path}")


@app.command("provision")
def provision_command() -> None:
    """Create the topics, buckets and Iceberg namespaces the settings point at (idempotent).

    Starts nothing: in production the provisioning Job runs it against Kafka, S3 and the
    catalog (deploy/k8s/provision-job.yaml); locally `up` does it for the embedded stack.
    """
    from lakehouse.stack.provision import provision

    settings = get_settings()
    created = provision(settings)
    for kind, names in created.items():
        typer.echo(f"{kind}: {', '.join(names) if names else 'all present'}")


@app.command()
def down() -> None:
    """Stop the services `up` started."""
    stop_stack(get_settings())
    typer.echo("stack down")


@app.command()
def status() -> None:
    """Which local services run, on which port."""
    settings = get_settings()
    for service in stack.services(settings):
        pid = stack.running_pid(service, settings)
        if pid:
            state = f"running (pid {pid})" if service.ready() else f"not answering (pid {pid})"
        elif stack.port_in_use(service.port):
            state = "port taken by another process"
        else:
            state = "stopped"
        typer.echo(f"{service.name:6} 127.0.0.1:{service.port:<6} {state}")
    typer.echo(f"catalog  {settings.resolved_catalog_uri}")
    typer.echo(f"warehouse {settings.resolved_warehouse}")


@app.command()
def prepare() -> None:
    """Parse the dbt project and build the Spark jar cache (both idempotent)."""
    prepare_dbt()
    typer.echo("dbt manifest ready")
    from lakehouse.spark.jars import SparkJarsMissing, build_spark_jars, provided_runtime

    settings = get_settings()
    if (runtime := provided_runtime()) is not None:
        typer.echo(f"Spark jars: {runtime.name} is on pyspark's classpath, no cache needed")
        return
    began = time.monotonic()
    try:
        _, built = build_spark_jars(settings)
    except SparkJarsMissing as exc:
        _fail(str(exc))
    state = "built" if built else "up to date"
    took = time.monotonic() - began
    typer.echo(f"Spark jars {state} in {settings.spark_jars_path} ({took:.1f} s)")


@app.command("check-sql")
def check_sql(
    project_dir: Annotated[
        Path | None, typer.Option(help="dbt project (default: dbt_project/).")
    ] = None,
) -> None:
    """Check the gold SQL for Trino, offline: every model and test, against silver schemas."""
    from lakehouse.dbt.sql_check import SqlCheckError, check_project

    started = time.monotonic()
    try:
        report = check_project(project_dir)
    except SqlCheckError as exc:
        _fail(str(exc))
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    for problem in report.problems:
        typer.secho(f"error: {problem}", fg=typer.colors.RED, err=True)
    if report.skipped:
        names = ", ".join(sorted(set(report.skipped)))
        typer.echo(f"not checked (downstream of a problem): {names}", err=True)
    checked = {mode: len(ids) for mode, ids in report.checked.items()}
    summary = (
        f"{checked.get('fresh', 0)} models and tests, {checked.get('incremental', 0)} incremental"
        f" runs checked as Trino SQL in {time.monotonic() - started:.1f} s"
    )
    if not report.ok:
        _fail(f"{len(report.problems)} problem(s); {summary}")
    typer.echo(f"ok: {summary}")


@app.command()
def demo(
    scale: int = typer.Option(1, min=1, help="Data volume multiplier (1 = 2,000 events)."),
    run: bool = typer.Option(True, help="Run the whole graph after loading the data."),
) -> None:
    """Load deterministic demo data, run the whole graph once, print a summary."""
    from lakehouse.demo.load import loaded_scale, publish_demo

    settings = get_settings()
    earlier = loaded_scale(settings)
    if earlier is not None and earlier != scale:
        # the local topics restart empty and are published again at the state's scale;
        # another scale's stream past the offsets bronze already read would graft one
        # shop's changes onto another's (an update to a customer the first one deleted)
        typer.echo(
            f"error: {settings.state_path} holds the demo at scale {earlier}, not {scale}. "
            f"Run `make clean` first (or set LAKEHOUSE_STATE_DIR to a new directory) to "
            f"load scale {scale}; `make demo SCALE={earlier}` runs this state again.",
            err=True,
        )
        raise typer.Exit(2)
    began = time.monotonic()
    with stack_session(settings):
        stack_up = time.monotonic()
        loaded = publish_demo(settings, scale)
        typer.echo(
            f"demo data: {loaded.events_produced} events and "
            f"{loaded.changes_produced} change events produced, "
            f"{loaded.files_uploaded} files uploaded"
            + (f", shop database {loaded.postgres}" if loaded.postgres else "")
            + f" (stack up {stack_up - began:.1f} s, data {time.monotonic() - stack_up:.1f} s)"
        )
        for note in loaded.notes:
            typer.echo(f"  note: {note}")
        if run:
            summary = run_graph(settings)
            typer.echo(summary)
    typer.echo(f"done in {time.monotonic() - began:.1f} s")


def run_graph(settings: LakehouseSettings) -> str:
    """Run the graph in-process against the local instance; return a summary.

    Two runs, as the schedules would launch them: the ``lakehouse`` job (ingest,
    silver, unpartitioned gold), then every daily gold partition as one backfill run
    (a single dbt invocation for the whole range).
    """
    loading = time.monotonic()
    prepare_dbt()
    prepare_dagster_home(settings)
    import dagster as dg

    from lakehouse.declarations.sources import sources
    from lakehouse.definitions import defs
    from lakehouse.demo.shop import postgres_reachable
    from lakehouse.demo.summary import summarize, where_the_time_went
    from lakehouse.orchestration.partitions import DAILY

    job = defs.resolve_job_def("lakehouse")
    loaded = f"  code location (dbt manifest, definitions): {time.monotonic() - loading:.1f} s"
    selection = None
    if not postgres_reachable(settings.postgres_dsn):
        database = {dg.AssetKey(["bronze", s.bronze_name]) for s in sources().database}
        selection = [k for k in job.asset_layer.executable_asset_keys if k not in database]
        typer.echo("PostgreSQL not reachable: the database extraction assets are skipped")
    daily = defs.resolve_job_def("build_gold_daily")
    partitions = DAILY.get_partition_keys()
    backfill = {
        "dagster/asset_partition_range_start": partitions[0],
        "dagster/asset_partition_range_end": partitions[-1],
    }
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    run_log = settings.log_dir / "last-run.log"
    with dg.DagsterInstance.get() as instance, run_log.open("w") as log, redirect_stdout(log):
        # step events go to the instance (the UI shows them) and dbt's output to the run
        # log; the terminal gets warnings and the summary
        quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        results = [
            job.execute_in_process(
                run_config=quiet, instance=instance, raise_on_error=False, asset_selection=selection
            )
        ]
        if results[0].success:
            results.append(
                daily.execute_in_process(
                    run_config=quiet, instance=instance, raise_on_error=False, tags=backfill
                )
            )
        times = [loaded, *(where_the_time_went(instance, result) for result in results)]
    summary = summarize(settings, results, times) + f"\nrun log:   {run_log}"
    failed = [r.run_id for r in results if not r.success]
    if failed:
        typer.secho(summary, err=True)
        _fail(f"run {failed[0]} failed; see `make dev` -> Runs for the step logs")
    return summary


@app.command()
def replay(source: str = typer.Argument(..., help="A Kafka or CDC source of sources.yml.")) -> None:
    """Re-ingest quarantined records of SOURCE that pass today's rules (exactly once)."""
    import uuid

    from lakehouse.declarations.sources import sources
    from lakehouse.quality.replay import replay_quarantine
    from resources.iceberg import IcebergCatalogResource

    declared = {s.name: s for s in (*sources().kafka, *sources().cdc)}
    if source not in declared:
        _fail(f"no Kafka or CDC source {source!r} in sources.yml; choose from {sorted(declared)}")
    run_id = f"replay-{uuid.uuid4()}"
    result = replay_quarantine(IcebergCatalogResource().load(), declared[source], run_id)
    typer.echo(result.summary())
    typer.echo(f"replay run id {run_id}; silver picks the records up on its next run")


@app.command()
def metrics(
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 in a pod)."),
    port: int = typer.Option(9108, help="Port of the /metrics endpoint."),
    ttl: float = typer.Option(30.0, help="Seconds a computation is served from the cache."),
) -> None:
    """Serve Prometheus metrics (lag, backlog, staleness, runs, quarantine, quality,
    files and snapshots) on http://HOST:PORT/metrics until interrupted."""
    from lakehouse.metrics import serve

    server, thread = serve(host, port, ttl)
    typer.echo(f"metrics on http://{host}:{port}/metrics (cached {ttl:g} s)")
    try:
        while thread.is_alive():
            thread.join(1.0)
    except KeyboardInterrupt:
        server.shutdown()


@app.command()
def dev(port: int = typer.Option(3000, help="Port of the Dagster UI.")) -> None:
    """Start the stack and `dg dev` (UI on http://127.0.0.1:PORT)."""
    settings = get_settings()
    prepare_dbt()
    prepare_dagster_home(settings)
    with stack_session(settings) as started:
        restore_demo_data(settings, started)
        typer.echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it and the stack)")
        # `dg dev` with a workspace file runs what `dagster dev` runs (Dagster 1.13 marks
        # `dagster dev` superseded by it and warns on every start)
        command = [
            str(Path(sys.executable).parent / "dg"),
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        # From DAGSTER_HOME (the repo-root dagster.yaml is copied there), in a process
        # group of its own so that stopping it reaches its webserver, daemon and code
        # servers, whoever sent us the signal.
        process = subprocess.Popen(command, cwd=settings.dagster_home, start_new_session=True)
        try:
            process.wait()
        except KeyboardInterrupt:
            # the daemon stops within a second; the webserver then waits up to 30 s per
            # code server (their heartbeat timeout) and prints a TimeoutExpired traceback,
            # 40-66 s measured here: nothing is left to save by then, so cut it short
            stop_process_group(process, timeout=DEV_SHUTDOWN_S)


DEV_SHUTDOWN_S = 15.0


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the group (dg dev shuts down cleanly on it), SIGKILL what is left."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def main() -> None:
    # dbt, dagster and the services run from this interpreter's venv, activated or not
    # pyiceberg warns on every overwrite of an empty table; the summary says what landed
    warnings.filterwarnings("ignore", message="Delete operation did not match any records")
    bin_dir = os.path.dirname(sys.executable)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    app()


if __name__ == "__main__":
    main()
