"""Every experiment a study needs, run once: the trial book stages ask for (task, method, seed)s.

A trial is identified by its task, method and seed, so it is run at most once per study: trials
already recorded (a resumed study) or already run by an earlier stage are served from the book,
only the missing ones go to the executor, and finished trials are handed to `on_new` (the flow
records them) as they complete, in small groups, before anyone uses them: a killed study loses
only the trials in flight. A failed trial (a program that raised or timed out, a `MethodSpec`
past the trial timeout) is known too: it is recorded once, never run again, and never scored.
"""

import threading
from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import Outcome, TrialFailure, TrialLimits, TrialResult, W2SEngine
from labgap.methods.kinds import Method

TrialKey = tuple[str, str, int]
"""(task hash, method hash, seed): a trial's identity within a study."""


class RecordedTrial(BaseModel):
    """A trial with the study phase that first asked for it (search, confirm or transfer)."""

    model_config = ConfigDict(frozen=True)
    phase: str
    trial: TrialResult


Done = Callable[[list[Outcome]], None]
"""Hears of finished outcomes as they complete (a few at a time), before `run` returns."""


class Executor(Protocol):
    """Runs experiments; returns one outcome per (method, seed), in the order asked, and hands
    each to `done` as soon as it completes. `phase` (search, confirm, transfer) only labels them.
    `idle` runs are wanted later: an executor may run them only on workers that would otherwise
    idle, and leave out of its answer those it had not started when told to stop."""

    def run(
        self,
        task: TaskSpec,
        runs: list[tuple[Method, int]],
        phase: str,
        done: Done,
        idle: bool = False,
    ) -> list[Outcome]: ...


class LocalExecutor:
    """Experiments one after another in this process (the command line's comparisons, tests)."""

    def __init__(self, engine: W2SEngine, limits: TrialLimits | None = None):
        self.engine = engine
        self.limits = limits

    def run(
        self,
        task: TaskSpec,
        runs: list[tuple[Method, int]],
        phase: str,
        done: Done,
        idle: bool = False,
    ) -> list[Outcome]:
        outcomes = []
        for method, seed in runs:
            outcomes.append(self.engine.run(task, method, seed, self.limits))
            done(outcomes[-1:])
        return outcomes


class TrialBook:
    """Thread-safe: agents of a round ask for trials at once. A trial another caller is already
    running is waited for, not run twice; finished ones are recorded one group at a time."""

    def __init__(
        self,
        executor: Executor,
        recorded: list[RecordedTrial],
        on_new: Callable[[str, str, list[Outcome]], None],
        on_progress: Callable[[str, int, int], None] = lambda task, ran, reused: None,
        failed: list[TrialFailure] = (),
    ):
        self._executor = executor
        self._on_new = on_new
        self._on_progress = on_progress
        self._known: dict[TrialKey, RecordedTrial] = {
            _key(r.trial.task_hash, r.trial.method_hash, r.trial.seed): r for r in recorded
        }
        self._failed: dict[TrialKey, TrialFailure] = {
            _key(f.task_hash, f.method_hash, f.seed): f for f in failed
        }
        self._in_flight: dict[TrialKey, threading.Event] = {}
        self._lock = threading.Lock()
        self._recording = threading.Lock()

    def trials(
        self,
        task: TaskSpec,
        methods: list[Method],
        seeds: list[int],
        phase: str,
        batch: str,
        idle: bool = False,
    ) -> list[TrialResult]:
        """Every (method, seed) trial of `task` that succeeded, method-major; missing ones are run
        as one batch. Failed ones are left out (`failures` tells why)."""
        wanted = [(method, seed) for method in methods for seed in seeds]
        keys = [_key(task.task_hash, m.method_hash, s) for m, s in wanted]
        missing: dict[TrialKey, tuple[Method, int]] = {}
        running: list[threading.Event] = []
        with self._lock:
            for key, run in zip(keys, wanted, strict=True):
                if key in self._known or key in self._failed or key in missing:
                    continue
                if key in self._in_flight:
                    running.append(self._in_flight[key])
                else:
                    missing[key] = run
            mine = {key: threading.Event() for key in missing}
            self._in_flight.update(mine)
        try:
            if missing:
                self._executor.run(
                    task, list(missing.values()), phase, self._recorder(phase, batch), idle
                )
                if not idle:  # counted when a stage asks for them
                    self._on_progress(task.name, len(missing), len(wanted) - len(missing))
        finally:
            with self._lock:
                for key, event in mine.items():
                    del self._in_flight[key]
                    event.set()
        for event in running:
            event.wait()
        with self._lock:
            return [self._known[key].trial for key in keys if key in self._known]

    def run_when_idle(
        self, task: TaskSpec, methods: list[Method], seeds: list[int], phase: str, batch: str
    ) -> None:
        """Trials a later stage will ask for (as `phase` and `batch`), run only on workers that
        would otherwise idle; those not started when the executor stops idle work are left to
        that stage, which runs them then."""
        self.trials(task, methods, seeds, phase, batch, idle=True)

    def _recorder(self, phase: str, batch: str) -> Done:
        def done(outcomes: list[Outcome]) -> None:
            with self._recording:
                self._on_new(phase, batch, outcomes)
            with self._lock:
                for outcome in outcomes:
                    key = _key(outcome.task_hash, outcome.method_hash, outcome.seed)
                    if isinstance(outcome, TrialFailure):
                        self._failed[key] = outcome
                    else:
                        self._known[key] = RecordedTrial(phase=phase, trial=outcome)

        return done

    def failures(self, task: TaskSpec, method: Method) -> list[TrialFailure]:
        """The trials of `method` on `task` that failed, by seed."""
        with self._lock:
            failed = list(self._failed.items())
        return sorted(
            (f for (t, m, _), f in failed if (t, m) == (task.task_hash, method.method_hash)),
            key=lambda failure: failure.seed,
        )

    def has(self, task: TaskSpec, method: Method, seed: int) -> bool:
        key = _key(task.task_hash, method.method_hash, seed)
        return key in self._known or key in self._failed

    def of_phase(self, task: TaskSpec, phase: str) -> list[TrialResult]:
        """The trials of `task` that `phase` first asked for, in the order they became known."""
        return [
            r.trial
            for r in self._known.values()
            if r.phase == phase and r.trial.task_hash == task.task_hash
        ]


def _key(task_hash: str, method_hash: str, seed: int) -> TrialKey:
    return (task_hash, method_hash, seed)
