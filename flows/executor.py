"""Experiments as Prefect task runs on the configured task runner (worker processes or threads)."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import unmapped
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from labgap.config import StudyConfig
from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialResult
from labgap.methods.spec import MethodSpec
from tasks.experiments import init_worker, prepare_reference, run_experiment, start_worker


class PrefectExecutor:
    """Each (task, seed)'s teacher and ceiling first, then every experiment of the batch at once."""

    def __init__(self, runner: TaskRunner):
        self.runner = runner

    def run(
        self, task: TaskSpec, runs: list[tuple[MethodSpec, int]], phase: str
    ) -> list[TrialResult]:
        """Task runs are named and tagged by stage, so the UI can group and filter them."""
        seeds = sorted({seed for _, seed in runs})
        prepare = prepare_reference.with_options(tags={phase})
        self.runner.map(prepare, {"task_spec": unmapped(task), "seed": seeds}).result()
        experiment = run_experiment.with_options(
            tags={phase}, task_run_name=f"{phase}-{{task_spec.name}}-{{method.loss}}-seed{{seed}}"
        )
        futures = self.runner.map(
            experiment,
            {
                "task_spec": unmapped(task),
                "method": [method for method, _ in runs],
                "seed": [seed for _, seed in runs],
            },
        )
        return futures.result()


@contextmanager
def experiment_executor(config: StudyConfig) -> Iterator[PrefectExecutor]:
    workers = config.workers or os.cpu_count() or 1
    if config.executor == "thread":
        runner = ThreadPoolTaskRunner(max_workers=workers)
    else:
        runner = ProcessPoolTaskRunner(
            max_workers=workers, initializer=init_worker, initargs=(workers,)
        )
    with runner:
        runner.submit(start_worker, {}).result()
        yield PrefectExecutor(runner)
