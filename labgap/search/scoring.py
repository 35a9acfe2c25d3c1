"""Guarded scoring: the pipeline, not the agent, owns ground truth and every number.

Agents only ever receive the mean dev-split PGR of a method the pipeline itself ran, within a
per-agent budget of scoring calls, and every call is recorded. The leaderboard and the winner are
computed from the pipeline's own trials, never from anything an agent reports. (The public
reference code returned exact correct-counts, answered for the training split and trusted
agent-reported numbers; this module exists so none of that can happen here.)
"""

import json
import math
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialFailure, TrialResult
from labgap.methods.kinds import Method


def mean_and_se(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (None with fewer than 1 and 2 values).

    The sum and the one-pass (Welford) recurrence are the ones DuckDB's `avg` and `stddev_samp`
    use, so the analysts' views agree with these numbers to the last bit."""
    mean, squares = 0.0, 0.0
    for count, value in enumerate(values, start=1):
        step = (value - mean) / count
        new_mean = mean + step
        squares += (value - new_mean) * (value - mean)
        mean = new_mean
    n = len(values)
    if n == 0:
        return None, None
    se = math.sqrt(squares / (n - 1)) / math.sqrt(n) if n >= 2 else None
    return sum(values) / n, se


def mean_dev_pgr(trials: Iterable[TrialResult]) -> float | None:
    """Mean dev PGR over the trials where it is defined; None when it is nowhere defined."""
    return mean_and_se([t.pgr_dev for t in trials if t.pgr_dev is not None])[0]


class ScoringCall(BaseModel):
    """One answered query: what an agent asked about and the only number it got back."""

    model_config = ConfigDict(frozen=True)

    agent_id: int
    round: int
    method_hash: str
    method_json: str
    family: str
    seeds: str
    dev_pgr: float | None
    budget_left: int
    error: str | None = None
    charge: int = 1
    """Scoring calls this answer cost: one, or more for a program that used more than
    `PROGRAM_CPU_SECONDS_PER_CALL` CPU seconds per seed."""


PROGRAM_CPU_SECONDS_PER_CALL = 20.0
"""What one scoring call buys a program, per seed: about ten in-process students on the lab task.
A program using more is charged more calls, so a heavy program cannot hide behind one call.
(In-process methods are charged one call: their cost is bounded by the method space.)"""


def charge_for(trials: list[TrialResult], failed: list[TrialFailure], n_seeds: int) -> int:
    """Calls a method's scoring costs: its programs' CPU seconds, rounded up to whole calls."""
    cpu = sum(t.program_cpu_seconds or 0.0 for t in trials) + sum(f.cpu_seconds for f in failed)
    return max(1, math.ceil(cpu / (n_seeds * PROGRAM_CPU_SECONDS_PER_CALL) - 1e-9))


class BudgetExhausted(Exception):
    """The agent has used its dev-scoring budget; it stops proposing (recorded, not an error)."""


class TrialSource(Protocol):
    """Where the lab gets its trials: the study's trial book."""

    def trials(
        self, task: TaskSpec, methods: list[Method], seeds: list[int], phase: str, batch: str
    ) -> list[TrialResult]: ...

    def failures(self, task: TaskSpec, method: Method) -> list[TrialFailure]: ...


class GuardedLab:
    """The `Lab` agents reach: dev PGR of the pipeline's own trials, within a per-agent budget.

    A method is charged once per agent and seeds: an agent asking again for a method it already
    had scored on the same seeds, in any round, gets the recorded call back for free (its `round`
    says when it was scored), and one asking again within a round gets that round's call, whatever
    the seeds (one call per agent, round and method). This holds in the same study run or after a
    resume (the recorded calls are passed in), so a replayed round costs nothing and reads back
    exactly the numbers it got the first time. A free answer records nothing new.
    """

    def __init__(
        self,
        task: TaskSpec,
        trials: TrialSource,
        search_seeds: Callable[[int | None], list[int]],
        budget: int,
        recorded: list[ScoringCall],
        on_calls: Callable[[list[ScoringCall]], None],
    ):
        self.task = task
        self.budget = budget
        self._trials = trials
        self._search_seeds = search_seeds
        self._on_calls = on_calls
        self._calls = {(c.agent_id, c.round, c.method_hash): c for c in recorded}
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[ScoringCall]:
        """Every call answered so far (recorded ones included), by round and agent, each agent's
        in the order it made them (agents of a round score at once)."""
        with self._lock:
            calls = list(self._calls.values())
        return sorted(calls, key=lambda call: (call.round, call.agent_id))

    def score(
        self, agent_id: int, round: int, methods: list[Method], n_seeds: int | None = None
    ) -> list[ScoringCall]:
        """The lock guards the record, not the experiments: agents of a round score at once."""
        seeds = self._search_seeds(n_seeds)
        unique = list({m.method_hash: m for m in methods}.values())
        with self._lock:
            known = {m.method_hash: self._known(agent_id, round, m, seeds) for m in unique}
            new = [m for m in unique if known[m.method_hash] is None]
            used = self._used(agent_id)
            if used + len(new) > self.budget:
                raise BudgetExhausted(
                    f"{self.budget - used} dev-scoring call(s) left, {len(new)} new method(s) asked"
                )
        if new:
            trials = self._trials.trials(
                self.task, new, seeds, "search", f"search-agent{agent_id}-round{round}"
            )
            with self._lock:
                used = self._used(agent_id)
                fresh = []
                for method in new:
                    own = [t for t in trials if t.method_hash == method.method_hash]
                    failed = [
                        f for f in self._trials.failures(self.task, method) if f.seed in seeds
                    ]
                    charge = charge_for(own, failed, len(seeds))
                    used += charge
                    fresh.append(
                        ScoringCall(
                            agent_id=agent_id,
                            round=round,
                            method_hash=method.method_hash,
                            method_json=method.canonical_json(),
                            family=method.family,
                            seeds=json.dumps(sorted(seeds)),
                            dev_pgr=mean_dev_pgr(own),
                            budget_left=max(0, self.budget - used),
                            error=_failure_note(failed, len(seeds)),
                            charge=charge,
                        )
                    )
                self._on_calls(fresh)
                self._calls.update({(c.agent_id, c.round, c.method_hash): c for c in fresh})
                known.update({c.method_hash: c for c in fresh})
        return [known[m.method_hash] for m in methods]

    def _used(self, agent_id: int) -> int:
        return sum(c.charge for (agent, _, _), c in self._calls.items() if agent == agent_id)

    def _known(
        self, agent_id: int, round: int, method: Method, seeds: list[int]
    ) -> ScoringCall | None:
        """The recorded answer to this question: the agent's earliest call of the method on the
        same seeds, else its call of the method this round (a round holds one call per method)."""
        asked = json.dumps(sorted(seeds))
        same_seeds = [
            call
            for (agent, _, method_hash), call in self._calls.items()
            if agent == agent_id and method_hash == method.method_hash and call.seeds == asked
        ]
        if same_seeds:
            return min(same_seeds, key=lambda call: call.round)
        return self._calls.get((agent_id, round, method.method_hash))


def _failure_note(failed: list[TrialFailure], asked: int) -> str | None:
    """What the agent is told when its method failed on some seeds: how many and the first error."""
    if not failed:
        return None
    first = failed[0]
    return f"failed on {len(failed)} of {asked} seed(s); seed {first.seed}: {first.error}"
