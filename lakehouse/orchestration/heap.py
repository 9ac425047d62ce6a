"""Keeping the garbage collector off the code location's heap while a step works."""

import gc


def freeze_loaded_heap() -> None:
    """Move every object alive now to the collector's permanent generation.

    The process that runs a step (the run's own process locally, a pod per step on
    Kubernetes) has imported the whole code location (Dagster, pyiceberg, pyarrow,
    dbt: about 470-490k tracked objects) before the step's work starts. The work then
    allocates objects per record (kafka-python's records, rows of a file, pandas
    values), and each full collection walks that loaded heap again: 200k Kafka events
    took 1.95 s with it and 1.33 s after this call (``python -m bench.gc_freeze``);
    silver.page_views over 100k events (``make demo SCALE=50``) 3.5 s and 3.1 s. Frozen objects are
    still freed by reference counting; only cycles among them wait for the process
    to end, and run and step processes are short-lived. Call it at the start of a
    step, never in a long-lived process such as the code server.
    """
    gc.freeze()
