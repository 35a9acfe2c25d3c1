"""Experiment tasks: one Prefect task run per (task, method, seed) and per (task, seed)'s teacher
and ceiling.

Under the process executor the task runs are threads of the flow process and their compute runs
in a pool of worker processes (`worker_pool`): Prefect's own process pool rebuilds its settings,
flow context and API clients in the worker for every task run, ~140 ms of a worker's time each,
where a task run in a thread costs the flow process a few milliseconds. Under the thread and Dask
executors the compute runs where the task run does.
"""

import atexit
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from distributed.diagnostics.plugin import WorkerPlugin
from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.data.tasks import TaskSpec
from labgap.engine.model import TorchThreads
from labgap.engine.w2s import Outcome, TrialLimits, W2SEngine
from labgap.methods.kinds import Method
from tasks.logs import quiet_completed_task_runs
from tasks.retry import RETRY_OPTIONS

T = TypeVar("T")

_engine: W2SEngine | None = None
_pool: ProcessPoolExecutor | None = None
"""This process's worker processes, while a study runs under the process executor."""


def init_worker(workers: int) -> None:
    """Runs once per worker process: torch gets its share of the cores, not all of them."""
    global _engine
    TorchThreads.configure(workers)
    _engine = W2SEngine(workers=workers)
    atexit.register(leave_quietly)


class DaskWorkerSetup(WorkerPlugin):
    """Runs in each Dask worker process, on any machine, as `init_worker` does in a pool.

    Torch gets one thread (a share of 1/cpu_count), so `--nworkers`/`--nthreads` decide how many
    cores a machine gives. Each study registers it again: a fresh engine per study keeps a
    long-lived worker's memory to one study's data (the fixed name replaces the last one). No
    `leave_quietly`: the nanny owns the worker's exit.
    """

    name = "labgap-worker-setup"

    def setup(self, worker) -> None:
        global _engine
        cores = os.cpu_count() or 1
        TorchThreads.configure(cores)
        quiet_completed_task_runs()
        _engine = W2SEngine(workers=cores)


def leave_quietly() -> None:
    """Exit a worker process without teardown: the interpreter's teardown in a worker that ran
    experiments prints pages of duckdb/nanobind "leaked instances" warnings into the flow's
    output; nothing is left to clean up by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def engine() -> W2SEngine:
    global _engine
    if _engine is None:
        _engine = W2SEngine()
    return _engine


@contextmanager
def worker_pool(workers: int) -> Iterator[None]:
    """`workers` worker processes for this process's experiment task runs, all started now
    (importing torch takes seconds) so they are ready when the plan is."""
    global _pool
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(workers,),
    )
    for _ in range(workers):  # one process is spawned per submission while none is idle
        pool.submit(_ready)
    _pool = pool
    try:
        yield
    finally:
        _pool = None
        pool.shutdown(wait=True, cancel_futures=True)


def _ready() -> bool:
    return engine() is not None


def _computed(work: Callable[..., T], *args) -> T:
    """`work` in a worker process when there is a pool, else here."""
    return work(*args) if _pool is None else _pool.submit(work, *args).result()


def _prepare(task_spec: TaskSpec, seed: int) -> bool:
    return engine().teacher_and_ceiling(task_spec, seed)[1]


def _experiment(
    task_spec: TaskSpec, method: Method, seed: int, limits: TrialLimits | None
) -> Outcome:
    return engine().run(task_spec, method, seed, limits)


@task(
    name="prepare-teacher-and-ceiling",
    cache_policy=NO_CACHE,
    task_run_name="prepare-{task_spec.name}-seed{seed}",
    **RETRY_OPTIONS,
)
def prepare_reference(task_spec: TaskSpec, seed: int) -> bool:
    """Train (or load) the weak teacher and the ceiling once per (task, seed); True if cached."""
    return _computed(_prepare, task_spec, seed)


@task(
    name="run-experiment",
    cache_policy=NO_CACHE,
    task_run_name="{task_spec.name}-{method.family}-seed{seed}",
    **RETRY_OPTIONS,
)
def run_experiment(
    task_spec: TaskSpec, method: Method, seed: int, limits: TrialLimits | None = None
) -> Outcome:
    """A program that fails, or a `MethodSpec` that trains past the trial timeout, comes back as
    a `TrialFailure` (recorded, not retried: it would fail again); only an exception of the
    pipeline itself is retried."""
    return _computed(_experiment, task_spec, method, seed, limits)
