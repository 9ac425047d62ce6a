select
    run_id,
    job as job_name,
    status as run_status,
    started_at,
    ended_at,
    cast(ended_at as date) as run_date,
    duration_s as duration_seconds,
    rows_written,
    rows_quarantined,
    error_class
from {{ source('ops', 'pipeline_runs') }}
