{#-
    Pipeline health per job and day, for on-call: how many runs finished, how many
    failed, the success rate and the median and p95 duration of the runs that started.
    In the Dagster `ops` group and rebuilt on a schedule (not eagerly: every run it
    summarizes is itself recorded in ops.pipeline_runs).
-#}
{{ config(meta={'dagster': {'group': 'ops'}}) }}

select
    job_name,
    run_date,
    count(*) as runs,
    count(case when run_status = 'success' then 1 end) as successes,
    count(case when run_status = 'failure' then 1 end) as failures,
    count(case when run_status = 'canceled' then 1 end) as cancellations,
    round(
        cast(count(case when run_status = 'success' then 1 end) as double) / count(*), 4
    ) as success_rate,
    round({{ percentile('duration_seconds', 0.5) }}, 3) as p50_duration_seconds,
    round({{ percentile('duration_seconds', 0.95) }}, 3) as p95_duration_seconds,
    max(duration_seconds) as max_duration_seconds,
    sum(coalesce(rows_written, 0)) as rows_written,
    sum(coalesce(rows_quarantined, 0)) as rows_quarantined,
    max(ended_at) as last_run_ended_at,
    max(case when run_status = 'success' then ended_at end) as last_success_at
from {{ ref('stg_pipeline_runs') }}
group by job_name, run_date
