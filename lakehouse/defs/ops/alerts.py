"""The alert sensor: one webhook message per incident and one on recovery, never per tick.

Each tick looks at the newest finished run of every job, the newest evaluation of every
blocking check and freshness check, and whether an ingest sensor gave up on its batch,
compares with the incidents open at the last tick (the cursor) and sends only the
changes (``lakehouse.orchestration.incidents``). A message the webhook refuses is not
recorded as sent: the next tick tries that one again, and only it. Whether alerts are
on, and the UI the messages link into, is the environment's ``alerts`` block in
``deploy/environments.yaml``, read at tick time.
"""

from __future__ import annotations

import json

import dagster as dg

from lakehouse.defs.ops.sensors import _error
from lakehouse.orchestration.incidents import Incident, apply, transitions
from resources.alerts import AlertDeliveryError, WebhookResource

RUNS_LOOKED_AT = 500


def _run_subjects(
    instance: dg.DagsterInstance, ui: str
) -> tuple[dict[str, Incident], dict[str, Incident]]:
    """Per job, its newest finished run: failing if it failed, healthy if it succeeded."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]),
        limit=RUNS_LOOKED_AT,
    )
    failing: dict[str, Incident] = {}
    healthy: dict[str, Incident] = {}
    seen: set[str] = set()
    for record in records:  # newest first
        run = record.dagster_run
        if run.job_name in seen:
            continue
        seen.add(run.job_name)
        key = f"run:{run.job_name}"
        link = f"{ui}/runs/{run.run_id}"
        if run.status == dg.DagsterRunStatus.FAILURE:
            error_class, message = _error(instance, run.run_id, None)
            detail = f"{error_class}: {message}" if error_class else "see the run's logs"
            title = f"Run of job {run.job_name} failed"
            failing[key] = Incident(key, title, detail[:1500], link, run_id=run.run_id)
        else:
            title = f"Job {run.job_name} runs again"
            healthy[key] = Incident(key, title, "", link, run_id=run.run_id)
    return failing, healthy


def _check_subjects(
    context: dg.SensorEvaluationContext, ui: str
) -> tuple[dict[str, Incident], dict[str, Incident]]:
    """Blocking checks and freshness checks, by their newest evaluation."""
    graph = context.repository_def.asset_graph
    watched = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        if spec.blocking or "freshness" in check_key.name:
            watched[check_key] = "freshness" if "freshness" in check_key.name else "blocking"
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(
        list(watched)
    )
    failing: dict[str, Incident] = {}
    healthy: dict[str, Incident] = {}
    for check_key, record in latest.items():
        if record is None:
            continue
        status = record.status.value
        if status not in ("SUCCEEDED", "FAILED"):
            continue  # planned or skipped: nothing known yet
        asset = check_key.asset_key.to_user_string()
        key = f"check:{asset}:{check_key.name}"
        link = f"{ui}/assets/{asset}?view=checks"
        kind = watched[check_key]
        if status == "FAILED":
            title = f"{kind.capitalize()} check {check_key.name} failed on {asset}"
            target = failing
        else:
            title = f"{kind.capitalize()} check {check_key.name} passes again on {asset}"
            target = healthy
        target[key] = Incident(
            key, title, "", link, run_id=record.run_id, asset=asset, check=check_key.name
        )
    return failing, healthy


def _batch_subjects(
    instance: dg.DagsterInstance, ui: str
) -> tuple[dict[str, Incident], dict[str, Incident]]:
    """Per ingest job, whether its sensor gave up on the newest batch: that batch's runs
    all ended and reached the sensors' bound (``MAX_ATTEMPTS_PER_BATCH``) without moving
    the committed position, so no further run is proposed until a person acts."""
    from lakehouse.defs.bronze.sensors import BATCH_TAG, MAX_ATTEMPTS_PER_BATCH

    records = instance.get_run_records(limit=RUNS_LOOKED_AT)
    newest_batch: dict[str, str] = {}
    runs_of: dict[tuple[str, str], list[dg.DagsterRun]] = {}
    for record in records:  # newest first
        run = record.dagster_run
        batch = run.tags.get(BATCH_TAG)
        if batch is None:
            continue
        newest_batch.setdefault(run.job_name, batch)
        runs_of.setdefault((run.job_name, batch), []).append(run)
    failing: dict[str, Incident] = {}
    healthy: dict[str, Incident] = {}
    for job, batch in newest_batch.items():
        runs = runs_of[(job, batch)]
        key = f"batch:{job}"
        link = f"{ui}/runs/{runs[0].run_id}"
        if len(runs) >= MAX_ATTEMPTS_PER_BATCH and all(r.is_finished for r in runs):
            title = f"The sensor of {job} stopped proposing batch {batch}"
            detail = (
                f"{len(runs)} runs ended without moving the committed position; fix the cause "
                "shown in the latest, then launch the job by hand"
            )
            failing[key] = Incident(key, title, detail, link, run_id=runs[0].run_id)
        else:
            title = f"The sensor of {job} proposes batches again"
            healthy[key] = Incident(key, title, "", link, run_id=runs[0].run_id)
    return failing, healthy


@dg.sensor(
    name="alerts",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends one webhook message when a run fails, a blocking check or a freshness "
    "check fails or an ingest sensor gives up on a batch, and one when it recovers "
    "(deploy/environments.yaml `alerts`; off locally and in CI).",
)
def alerts_sensor(context: dg.SensorEvaluationContext, alerts: WebhookResource):
    config = alerts.settings()
    if not config.enabled:
        return dg.SkipReason("alerts are off in this environment (deploy/environments.yaml)")
    ui = config.ui_url.rstrip("/")
    state: dict = json.loads(context.cursor) if context.cursor else {}
    run_failing, run_healthy = _run_subjects(context.instance, ui)
    check_failing, check_healthy = _check_subjects(context, ui)
    batch_failing, batch_healthy = _batch_subjects(context.instance, ui)
    changes = transitions(
        state,
        {**run_failing, **check_failing, **batch_failing},
        {**run_healthy, **check_healthy, **batch_healthy},
    )
    sent, undelivered = 0, []
    for change in changes:
        try:
            alerts.post(change.payload())
        except AlertDeliveryError as exc:
            undelivered.append(f"{change.incident.key}: {exc}")
            continue
        state = apply(state, change)
        sent += 1
    context.update_cursor(json.dumps(state, sort_keys=True))
    if undelivered:
        context.log.warning(f"alerts not delivered, retried next tick: {undelivered}")
    return dg.SkipReason(f"{sent} alert(s) sent, {len(state)} incident(s) open")
