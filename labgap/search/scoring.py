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
from labgap.engine.w2s import TrialResult
from labgap.methods.spec import MethodSpec


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


class BudgetExhausted(Exception):
    """The agent has used its dev-scoring budget; it stops proposing (recorded, not an error)."""


class TrialSource(Protocol):
    """Where the lab gets its trials: the study's trial book."""

    def trials(
        self, task: TaskSpec, methods: list[MethodSpec], seeds: list[int], phase: str, batch: str
    ) -> list[TrialResult]: ...


class GuardedLab:
    """The `Lab` agents reach: dev PGR of the pipeline's own trials, within a per-agent budget.

    Each (agent, round, method) is charged once: asking again, in the same study run or after a
    resume (the recorded calls are passed in), is answered from the record for free, so a
    replayed round costs nothing and reads back exactly the numbers it got the first time.
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
        """Every call answered so far (recorded ones included), in the order they were made."""
        return list(self._calls.values())

    def score(
        self, agent_id: int, round: int, methods: list[MethodSpec], n_seeds: int | None = None
    ) -> list[ScoringCall]:
        with self._lock:
            unique = list({m.method_hash: m for m in methods}.values())
            new = [m for m in unique if (agent_id, round, m.method_hash) not in self._calls]
            used = sum(key[0] == agent_id for key in self._calls)
            if used + len(new) > self.budget:
                raise BudgetExhausted(
                    f"{self.budget - used} dev-scoring call(s) left, {len(new)} new method(s) asked"
                )
            if new:
                trials = self._trials.trials(
                    self.task,
                    new,
                    self._search_seeds(n_seeds),
                    "search",
                    f"search-agent{agent_id}-round{round}",
                )
                fresh = []
                for method in new:
                    used += 1
                    own = [t for t in trials if t.method_hash == method.method_hash]
                    fresh.append(
                        ScoringCall(
                            agent_id=agent_id,
                            round=round,
                            method_hash=method.method_hash,
                            method_json=method.canonical_json(),
                            family=method.family,
                            seeds=json.dumps(sorted(t.seed for t in own)),
                            dev_pgr=mean_dev_pgr(own),
                            budget_left=self.budget - used,
                        )
                    )
                self._on_calls(fresh)
                self._calls.update({(c.agent_id, c.round, c.method_hash): c for c in fresh})
            return [self._calls[(agent_id, round, m.method_hash)] for m in methods]
