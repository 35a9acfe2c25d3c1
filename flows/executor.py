"""Experiments as Prefect task runs on the configured task runner: threads of the flow process
computing in worker processes, threads computing in place, or a Dask cluster spanning machines.
Results always come back to the flow process, the only writer."""

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import copy_context

from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from labgap.config import StudyConfig
from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import Outcome, TrialLimits
from labgap.methods.kinds import Method
from labgap.trials import Done
from tasks.experiments import DaskWorkerSetup, prepare_reference, run_experiment, worker_pool

STREAM_GROUP = 4
"""Finished trials recorded together: one quality gate per group keeps the flow process's work
per trial small, and a kill loses at most this many finished but unrecorded trials."""


class PrefectExecutor:
    """Each (task, seed)'s teacher and ceiling once per study, and every experiment of a batch at
    once: an experiment waits only for its own seed's teacher and ceiling, not the batch's.

    Thread-safe: the agents of a round and the tasks of a look submit at the same time.
    """

    def __init__(self, runner: TaskRunner, limits: TrialLimits):
        self.runner = runner
        self.limits = limits
        self._prepared: dict[tuple[str, int], PrefectFuture] = {}
        self._lock = threading.RLock()  # a done future calls back at once

    def run(
        self, task: TaskSpec, runs: list[tuple[Method, int]], phase: str, done: Done
    ) -> list[Outcome]:
        """Task runs are named by stage (`search-`, `confirm-`, `transfer-`), not tagged: a tag
        costs every task run a concurrency-slot request to the server. Results reach `done` in
        completion order, a few at a time (each group is gated and recorded at once), so a
        killed study keeps every trial that had finished."""
        prepared = {seed: self._preparation(task, seed) for seed in sorted({s for _, s in runs})}
        experiment = run_experiment.with_options(
            task_run_name=f"{phase}-{{task_spec.name}}-{{method.family}}-seed{{seed}}"
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

    def _preparation(self, task: TaskSpec, seed: int) -> PrefectFuture:
        """The study's one preparation of (task, seed): every later batch waits on the same task
        run (done by then, so at no cost). A failed one is forgotten, so the next batch tries
        again."""
        key = (task.task_hash, seed)
        with self._lock:
            if key not in self._prepared:
                future = self.runner.submit(prepare_reference, {"task_spec": task, "seed": seed})
                self._prepared[key] = future
                future.add_done_callback(self._forget_failed)
            return self._prepared[key]

    def _forget_failed(self, future: PrefectFuture) -> None:
        if not future.state.is_completed():
            with self._lock:
                for key, known in list(self._prepared.items()):
                    if known is future:
                        del self._prepared[key]


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
    """Under the process executor the worker processes start at once, while the flow plans."""
    workers = config.workers or os.cpu_count() or 1
    limits = TrialLimits(sandbox=config.sandbox, timeout_seconds=config.trial_timeout_seconds)
    if config.executor == "dask":
        with dask_runner(config.dask_address, workers) as runner:
            runner.client.register_plugin(DaskWorkerSetup())
            yield PrefectExecutor(runner, limits)
        return
    with ExitStack() as stack:
        if config.executor == "process":
            stack.enter_context(worker_pool(workers))
        runner = stack.enter_context(ThreadPoolTaskRunner(max_workers=workers))
        yield PrefectExecutor(runner, limits)
