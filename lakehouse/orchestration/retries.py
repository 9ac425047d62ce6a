"""Bounded retries, the only kind this project uses.

A level-triggered retry condition once produced hundreds of thousands of failed runs in
a peer's platform: a failed run is retried twice from the failure, then waits for a
person.
"""

RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE"}
