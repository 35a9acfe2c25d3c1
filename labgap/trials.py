"""Every experiment a study needs, run once: the trial book stages ask for (task, method, seed)s.

A trial is identified by its task, method and seed, so it is run at most once per study: trials
already recorded (a resumed study) or already run by an earlier stage are served from the book,
only the missing ones go to the executor, and each finished batch is handed to `on_new` (the
flow records it) before anyone uses it.
"""

from collections.abc import Callable
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialResult, W2SEngine
from labgap.methods.spec import MethodSpec

TrialKey = tuple[str, str, int]
"""(task hash, method hash, seed): a trial's identity within a study."""


class RecordedTrial(BaseModel):
    """A trial with the study phase that first asked for it (search, confirm or transfer)."""

    model_config = ConfigDict(frozen=True)
    phase: str
    trial: TrialResult


class Executor(Protocol):
    """Runs experiments; returns one result per (method, seed), in the order asked. `phase`
    (search, confirm, transfer) only labels the runs."""

    def run(
        self, task: TaskSpec, runs: list[tuple[MethodSpec, int]], phase: str
    ) -> list[TrialResult]: ...


class LocalExecutor:
    """Experiments one after another in this process (the command line's comparisons, tests)."""

    def __init__(self, engine: W2SEngine):
        self.engine = engine

    def run(
        self, task: TaskSpec, runs: list[tuple[MethodSpec, int]], phase: str
    ) -> list[TrialResult]:
        return [self.engine.run(task, method, seed) for method, seed in runs]


class TrialBook:
    def __init__(
        self,
        executor: Executor,
        recorded: list[RecordedTrial],
        on_new: Callable[[str, str, list[TrialResult]], None],
        on_progress: Callable[[str, int, int], None] = lambda task, ran, reused: None,
    ):
        self._executor = executor
        self._on_new = on_new
        self._on_progress = on_progress
        self._known: dict[TrialKey, RecordedTrial] = {
            _key(r.trial.task_hash, r.trial.method_hash, r.trial.seed): r for r in recorded
        }

    def trials(
        self, task: TaskSpec, methods: list[MethodSpec], seeds: list[int], phase: str, batch: str
    ) -> list[TrialResult]:
        """Every (method, seed) trial of `task`, method-major; missing ones are run as one batch."""
        wanted = [(method, seed) for method in methods for seed in seeds]
        missing = list(
            {
                _key(task.task_hash, m.method_hash, s): (m, s)
                for m, s in wanted
                if _key(task.task_hash, m.method_hash, s) not in self._known
            }.values()
        )
        if missing:
            fresh = self._executor.run(task, missing, phase)
            self._on_new(phase, batch, fresh)
            for trial in fresh:
                key = _key(trial.task_hash, trial.method_hash, trial.seed)
                self._known[key] = RecordedTrial(phase=phase, trial=trial)
            self._on_progress(task.name, len(missing), len(wanted) - len(missing))
        return [self._known[_key(task.task_hash, m.method_hash, s)].trial for m, s in wanted]

    def has(self, task: TaskSpec, method: MethodSpec, seed: int) -> bool:
        return _key(task.task_hash, method.method_hash, seed) in self._known

    def of_phase(self, task: TaskSpec, phase: str) -> list[TrialResult]:
        """The trials of `task` that `phase` first asked for, in the order they became known."""
        return [
            r.trial
            for r in self._known.values()
            if r.phase == phase and r.trial.task_hash == task.task_hash
        ]


def _key(task_hash: str, method_hash: str, seed: int) -> TrialKey:
    return (task_hash, method_hash, seed)
