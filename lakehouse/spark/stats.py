"""What Spark did for one asset, summarized for the Dagster run log and metadata.

Spark's own log is kept at WARN (see ``lakehouse.spark.jars``); instead of its
INFO lines, each asset runs its work in a job group and reports the group's jobs,
stages, tasks and stage times from Spark's status store, in one line.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class SparkWork:
    group: str
    jobs: int = 0
    stages: int = 0
    tasks: int = 0
    stage_seconds: float = 0.0  # sum of stage wall times (submission to completion)
    executor_seconds: float = 0.0  # task run time summed over executors
    slowest_stage: str = ""
    slowest_stage_seconds: float = 0.0
    available: bool = field(default=True)

    def summary(self) -> str:
        if not self.available:
            return "Spark stage statistics unavailable (Spark Connect session)"
        return (
            f"Spark: {self.jobs} jobs, {self.stages} stages, {self.tasks} tasks, "
            f"stages {self.stage_seconds:.2f} s, executors {self.executor_seconds:.2f} s; "
            f"slowest stage {self.slowest_stage_seconds:.2f} s ({self.slowest_stage})"
        )

    def metadata(self) -> dict[str, Any]:
        if not self.available:
            return {}
        return {
            "spark_jobs": self.jobs,
            "spark_stages": self.stages,
            "spark_tasks": self.tasks,
            "spark_stage_seconds": round(self.stage_seconds, 3),
            "spark_executor_seconds": round(self.executor_seconds, 3),
            "spark_slowest_stage": f"{self.slowest_stage} ({self.slowest_stage_seconds:.2f} s)",
        }


@contextmanager
def spark_work(spark: SparkSession, description: str) -> Iterator[SparkWork]:
    """Run the block's Spark jobs in their own job group; fill the summary after it."""
    work = SparkWork(group=f"lakehouse-{uuid.uuid4().hex[:12]}")
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect has no SparkContext on the client
        work.available = False
        yield work
        return
    context.setJobGroup(work.group, description)
    try:
        yield work
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
        _collect(spark, work)


def _collect(spark: SparkSession, work: SparkWork) -> None:
    context = spark.sparkContext
    job_ids = context.statusTracker().getJobIdsForGroup(work.group)
    store = context._jsc.sc().statusStore()
    seen: set[int] = set()
    for job_id in job_ids:
        job = store.job(job_id)
        work.jobs += 1
        stage_ids = job.stageIds()
        for i in range(stage_ids.size()):
            stage_id = stage_ids.apply(i)
            if stage_id in seen:
                continue
            seen.add(stage_id)
            try:
                stage = store.lastStageAttempt(stage_id)
            except Exception:  # skipped stages (reused shuffle output) have no attempt
                continue
            if stage.submissionTime().isEmpty() or stage.completionTime().isEmpty():
                continue
            seconds = (
                stage.completionTime().get().getTime() - stage.submissionTime().get().getTime()
            ) / 1000
            work.stages += 1
            work.tasks += stage.numTasks()
            work.stage_seconds += seconds
            work.executor_seconds += stage.executorRunTime() / 1000
            if seconds >= work.slowest_stage_seconds:
                work.slowest_stage_seconds = seconds
                work.slowest_stage = str(stage.name()).split("\n")[0][:80]
