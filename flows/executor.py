"""Experiments as Prefect task runs on the configured task runner: worker processes, threads, or a
Dask cluster spanning machines. Results always come back to the flow process, the only writer."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import copy_context

from prefect.context import TaskRunContext
from prefect.futures import as_completed
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from labgap.config import StudyConfig
from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import Outcome, TrialLimits
from labgap.methods.kinds import Method
from labgap.trials import Done
from tasks.experiments import (
    DaskWorkerSetup,
    init_worker,
    prepare_reference,
    run_experiment,
    start_worker,
)

STREAM_GROUP = 4
"""Finished trials recorded together: one quality gate per group keeps the flow process's work
per trial small, and a kill loses at most this many finished but unrecorded trials."""


class PrefectExecutor:
    """Each (task, seed)'s teacher and ceiling, and every experiment of the batch, at once: an
    experiment waits only for its own seed's teacher and ceiling, not for the whole batch's."""

    def __init__(self, runner: TaskRunner, limits: TrialLimits):
        self.runner = runner
        self.limits = limits

    def run(
        self, task: TaskSpec, runs: list[tuple[Method, int]], phase: str, done: Done
    ) -> list[Outcome]:
        """Task runs are named and tagged by stage, so the UI can group and filter them. Results
        reach `done` in completion order, a few at a time (each group is gated and recorded at
        once), so a killed study keeps every trial that had finished."""
        prepare = prepare_reference.with_options(tags={phase})
        prepared = {
            seed: self.runner.submit(prepare, {"task_spec": task, "seed": seed})
            for seed in sorted({seed for _, seed in runs})
        }
        experiment = run_experiment.with_options(
            tags={phase}, task_run_name=f"{phase}-{{task_spec.name}}-{{method.family}}-seed{{seed}}"
        )
        futures = [
            self.runner.submit(
                experiment,
                {"task_spec": task, "method": method, "seed": seed, "limits": self.limits},
                wait_for=[prepared[seed]],
            )
            for method, seed in runs
        ]
        pending: list[Outcome] = []
        try:
            for future in as_completed(futures):
                pending.append(future.result())
                if len(pending) >= STREAM_GROUP:
                    done(pending)
                    pending = []
        finally:
            if pending:  # what finished before the end, or before a failure or a cancellation
                done(pending)
        return [future.result() for future in futures]


class FlowLevelDaskTaskRunner(DaskTaskRunner):
    """Submits as the flow does, whichever stage asks.

    Dask pickles the submitting Prefect context at every submission, and a stage task's context
    carries the stage's arguments (the database, the agents); experiments run under the flow's
    context instead, as they do in the process pool.
    """

    def submit(self, task, parameters, wait_for=None, dependencies=None):
        return copy_context().run(self._submit_from_flow, task, parameters, wait_for, dependencies)

    def _submit_from_flow(self, *args):
        TaskRunContext.__var__.set(None)
        return super().submit(*args)


def dask_runner(address: str | None, workers: int) -> DaskTaskRunner:
    """A running scheduler's cluster, or a local one of `workers` single-threaded processes."""
    if address:
        return FlowLevelDaskTaskRunner(address=address)
    return FlowLevelDaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextmanager
def experiment_executor(config: StudyConfig) -> Iterator[PrefectExecutor]:
    workers = config.workers or os.cpu_count() or 1
    if config.executor == "dask":
        runner = dask_runner(config.dask_address, workers)
    elif config.executor == "thread":
        runner = ThreadPoolTaskRunner(max_workers=workers)
    else:
        runner = ProcessPoolTaskRunner(
            max_workers=workers, initializer=init_worker, initargs=(workers,)
        )
    with runner:
        if isinstance(runner, DaskTaskRunner):
            runner.client.register_plugin(DaskWorkerSetup())
        runner.submit(start_worker, {}).result()
        limits = TrialLimits(sandbox=config.sandbox, timeout_seconds=config.trial_timeout_seconds)
        yield PrefectExecutor(runner, limits)
