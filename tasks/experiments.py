"""Experiment tasks: one Prefect task per (task, method, seed), run in worker processes."""

import atexit
import os
import sys

from distributed.diagnostics.plugin import WorkerPlugin
from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.data.tasks import TaskSpec
from labgap.engine.model import TorchThreads
from labgap.engine.w2s import Outcome, TrialLimits, W2SEngine
from labgap.methods.kinds import Method
from tasks.logs import quiet_completed_task_runs
from tasks.retry import RETRY_OPTIONS

_engine: W2SEngine | None = None


def init_worker(workers: int) -> None:
    """Runs once per worker process: torch gets its share of the cores, not all of them."""
    global _engine
    TorchThreads.configure(workers)
    quiet_completed_task_runs()
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
    """Hand the Prefect API this worker's last logs and events, then exit without teardown.

    The interpreter's teardown in a worker that ran tasks prints pages of duckdb/nanobind
    "leaked instances" warnings into the flow's output; nothing is left to clean up by then.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    EventsWorker.drain_all(timeout=10)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def engine() -> W2SEngine:
    global _engine
    if _engine is None:
        _engine = W2SEngine()
    return _engine


@task(name="prepare-teacher-and-ceiling", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def prepare_reference(task_spec: TaskSpec, seed: int) -> bool:
    """Train (or load) the weak teacher and the ceiling once per (task, seed); True if cached."""
    return engine().teacher_and_ceiling(task_spec, seed)[1]


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
    return engine().run(task_spec, method, seed, limits)


@task(name="start-worker", cache_policy=NO_CACHE)
def start_worker() -> bool:
    """A first, empty task run: starts a worker while the flow, not a stage, is submitting.

    Prefect's process pool captures the submitting context once, at its first submission; from
    inside a stage task that context would carry the stage's arguments (the database, the agents),
    which cannot be pickled into a worker process.
    """
    return engine() is not None
