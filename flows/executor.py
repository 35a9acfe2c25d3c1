"""Experiments as Prefect task runs on the configured task runner: threads of the flow process
computing in worker processes, threads computing in place, or a Dask cluster spanning machines.
Results always come back to the flow process, the only writer."""

import math
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from contextvars import Context, copy_context
from functools import partial

from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner

from flows.dispatch import Dispatcher
from labgap.config import StudyConfig
from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import Outcome, TrialLimits, TrialResult
from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.replication import LookBatch
from labgap.search.scoring import training_seconds
from labgap.stages import BASELINE
from labgap.trials import Done, TrialBook
from tasks.experiments import DaskWorkerSetup, prepare_reference, run_experiment, worker_pool

STREAM_GROUP = 4
"""Finished trials recorded together: one quality gate (about 0.3 s of the flow process's time,
whatever the group's size) per group keeps the flow's work per trial small."""
STREAM_SECONDS = 10.0
"""A finished trial waits at most this long for its group: with trials of minutes each it is
recorded alone, so a kill loses the trials in flight and those finished in the last 10 s."""


class PrefectExecutor:
    """Each (task, seed)'s teacher and ceiling once per study, and every experiment of a batch as
    soon as its own seed's teacher and ceiling are ready, the longest first (`Dispatcher`).

    Thread-safe: the agents of a round and the tasks of a look ask at the same time.
    """

    def __init__(self, runner: TaskRunner, limits: TrialLimits, dispatcher: Dispatcher):
        self.runner = runner
        self.limits = limits
        self._dispatcher = dispatcher
        self._prepared: dict[tuple[str, int], Future] = {}
        self._seconds: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def run(
        self,
        task: TaskSpec,
        runs: list[tuple[Method, int]],
        phase: str,
        done: Done,
        idle: bool = False,
    ) -> list[Outcome]:
        """Task runs are named by stage (`search-`, `confirm-`, `transfer-`), not tagged: a tag
        costs every task run a concurrency-slot request to the server. Results reach `done` in
        completion order, a few at a time (each group is gated and recorded at once, see
        `STREAM_SECONDS`), so a killed study keeps nearly every trial that had finished.
        Idle-time runs withdrawn before they started are left out of the answer."""
        context = copy_context()
        seeds = sorted({seed for _, seed in runs})
        prepared = {seed: self._preparation(task, seed, context, idle) for seed in seeds}
        experiment = run_experiment.with_options(
            task_run_name=f"{phase}-{{task_spec.name}}-{{method.family}}-seed{{seed}}"
        )

        def submit(method: Method, seed: int) -> PrefectFuture:
            return self.runner.submit(
                experiment,
                {"task_spec": task, "method": method, "seed": seed, "limits": self.limits},
                wait_for=[prepared[seed].result()],
            )

        started = [
            self._dispatcher.add(
                self._estimate(task, method),
                partial(submit, method, seed),
                context,
                prepared[seed],
                idle,
            )
            for method, seed in runs
        ]
        self._stream(started, done, idle)
        return [future.result().result() for future in started if not future.cancelled()]

    def _stream(self, started: list[Future], done: Done, idle: bool) -> None:
        """Finished outcomes go to `done` in groups of up to `STREAM_GROUP`, none waiting more
        than `STREAM_SECONDS`; a failure is raised once the others that finished are recorded."""
        pending: list[Outcome] = []
        waiting, first_finished = set(started), 0.0
        try:
            while waiting:
                due = first_finished + STREAM_SECONDS - time.monotonic()
                finished, waiting = wait(
                    waiting, max(due, 0.0) if pending else None, FIRST_COMPLETED
                )
                failure = None
                for future in sorted(finished, key=started.index):
                    if idle and future.cancelled():
                        continue
                    try:
                        outcome = future.result().result()
                    except Exception as error:
                        failure = failure or error
                        continue
                    if not pending:
                        first_finished = time.monotonic()
                    pending.append(self._observed(outcome))
                if failure is not None:
                    raise failure
                if len(pending) >= STREAM_GROUP or (
                    pending and time.monotonic() >= first_finished + STREAM_SECONDS
                ):
                    done(pending)
                    pending = []
        finally:
            if pending:  # what finished before the end, or before a failure or a cancellation
                done(pending)

    def stop_idle_work(self) -> None:
        """Idle-time runs not started yet are withdrawn (their stage will ask for them)."""
        self._dispatcher.stop_idle_work()

    def _preparation(self, task: TaskSpec, seed: int, context: Context, idle: bool) -> Future:
        """The study's one preparation of (task, seed), ahead of every experiment: later batches
        wait on the same task run (finished by then). A failed or withdrawn one is forgotten,
        so the next batch tries again."""
        key = (task.task_hash, seed)
        with self._lock:
            if key in self._prepared and not self._prepared[key].cancelled():
                if not idle:
                    self._dispatcher.promote(self._prepared[key])
                return self._prepared[key]
            submit = partial(
                self.runner.submit, prepare_reference, {"task_spec": task, "seed": seed}
            )
            started = self._dispatcher.add(math.inf, submit, context, idle=idle)
            self._prepared[key] = started

        def forget_failed(future: Future) -> None:
            if not future.cancelled() and future.exception() is None:
                prepared = future.result()
                prepared.wait()  # its final state, not the server's view, which can lag
                if prepared.state.is_completed():
                    return
            with self._lock:
                if self._prepared.get(key) is future:
                    del self._prepared[key]

        started.add_done_callback(forget_failed)
        return started

    def _estimate(self, task: TaskSpec, method: Method) -> float:
        """Seconds a trial should take: as measured in this study, else the training estimate
        (a program is first taken for a vanilla student)."""
        with self._lock:
            measured = self._seconds.get((task.task_hash, method.method_hash))
        if measured is not None:
            return measured
        return training_seconds(task, method if isinstance(method, MethodSpec) else MethodSpec())

    def _observed(self, outcome: Outcome) -> Outcome:
        if isinstance(outcome, TrialResult):
            with self._lock:
                self._seconds[(outcome.task_hash, outcome.method_hash)] = outcome.wall_seconds
        return outcome


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
    with ExitStack() as stack:
        if config.executor == "dask":
            runner = stack.enter_context(dask_runner(config.dask_address, workers))
            runner.client.register_plugin(DaskWorkerSetup())
            limit = None
        else:
            if config.executor == "process":
                stack.enter_context(worker_pool(workers))
            runner = stack.enter_context(ThreadPoolTaskRunner(max_workers=workers))
            limit = workers + 1
        dispatcher = Dispatcher(limit)
        stack.callback(dispatcher.close)
        yield PrefectExecutor(runner, limits, dispatcher)


@contextmanager
def idle_work(
    executor: PrefectExecutor, book: TrialBook, batches: list[LookBatch]
) -> Iterator[None]:
    """The first look's baseline trials run on workers the search would leave idle (a round's
    tail, the flow's work between rounds); those not started when the block ends are withdrawn
    for the look to ask for, the started ones finish first."""
    with ThreadPoolExecutor(max_workers=len(batches), thread_name_prefix="idle") as pool:
        asked = [
            pool.submit(
                copy_context().run,
                book.run_when_idle,
                batch.task,
                [BASELINE],
                batch.seeds,
                batch.phase,
                batch.batch,
            )
            for batch in batches
        ]
        try:
            yield
        finally:
            executor.stop_idle_work()
            for future in asked:
                future.result()
