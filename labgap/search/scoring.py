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
from labgap.engine.w2s import TrialFailure, TrialResult, effective_recipe
from labgap.methods.kinds import Method
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
    error: str | None = None
    charge: int = 1
    """Scoring calls this answer cost: one, or more for a `MethodSpec` whose estimated compute is
    more than vanilla's (`method_charge`) or a program that used more than
    `PROGRAM_CPU_SECONDS_PER_CALL` CPU seconds per seed."""


PROGRAM_CPU_SECONDS_PER_CALL = 20.0
"""What one scoring call buys a program, per seed: about ten in-process students on the lab task.
A program using more is charged more calls, so a heavy program cannot hide behind one call."""


def charge_for(trials: list[TrialResult], failed: list[TrialFailure], n_seeds: int) -> int:
    """Calls a program's scoring costs: its CPU seconds, rounded up to whole calls."""
    cpu = sum(t.program_cpu_seconds or 0.0 for t in trials) + sum(f.cpu_seconds for f in failed)
    return max(1, math.ceil(cpu / (n_seeds * PROGRAM_CPU_SECONDS_PER_CALL) - 1e-9))


STEP_SECONDS = {0: 0.31e-3, 64: 0.66e-3, 256: 1.03e-3, 1024: 1.87e-3}
ROW_SECONDS = {0: 2.9e-6, 64: 3.4e-6, 256: 7.0e-6, 1024: 32.5e-6}
KNN_PAIR_SECONDS = 15e-9
"""A `MethodSpec`'s training seconds: (1 + self_training_rounds) x (epochs x (ceil(rows / batch)
x STEP_SECONDS[hidden] + rows x ROW_SECONDS[hidden]) + rows^2 x KNN_PAIR_SECONDS if kNN), rows
being the w2s-train rows (those kept by confident_fraction for training). Measured on rt-lab
(6000 rows, 384 features, one torch thread): this fit is within 7% over hidden 0-1024 x batch
32-512, where steps alone (epochs x rows / batch) miss by up to 3x (batch 512) and 2.5x (hidden
1024); kNN takes ~0.55 s a round at any k, 0.2x a vanilla student (2.8 s)."""


def training_seconds(task: TaskSpec, method: MethodSpec) -> float:
    """Estimated seconds (on the machine measured) to train `method`'s students on `task`."""
    recipe = effective_recipe(task.recipe, method)
    rows = task.splits.w2s_train
    kept = max(1, round(method.confident_fraction * rows))
    epoch = math.ceil(kept / recipe.batch_size) * STEP_SECONDS[recipe.hidden]
    epoch += kept * ROW_SECONDS[recipe.hidden]
    knn = rows**2 * KNN_PAIR_SECONDS if method.knn_k else 0.0
    return (1 + method.self_training_rounds) * (recipe.epochs * epoch + knn)


def compute_ratio(task: TaskSpec, method: MethodSpec) -> float:
    """`method`'s estimated compute per seed relative to vanilla's on the same task."""
    return training_seconds(task, method) / training_seconds(task, MethodSpec())


CHARGE_TOLERANCE = 0.1
"""The estimate's precision: a method at most 10% over a whole number of vanillas is charged that
number, so that noise in the estimate (a 1.02x method) does not double a charge."""


def method_charge(task: TaskSpec, method: MethodSpec) -> int:
    """Calls scoring a `MethodSpec` costs, known before it runs: its `compute_ratio` k rounded up,
    ceil(k - CHARGE_TOLERANCE), and at least one (vanilla and anything cheaper cost one call), so
    a heavy method cannot hide behind one call either."""
    return max(1, math.ceil(compute_ratio(task, method) - CHARGE_TOLERANCE))


class BudgetExhausted(Exception):
    """The agent's dev-scoring budget cannot cover what it asked; nothing was run. An agent with
    no budget left stops proposing (recorded, not an error)."""


class TrialSource(Protocol):
    """Where the lab gets its trials: the study's trial book."""

    def trials(
        self, task: TaskSpec, methods: list[Method], seeds: list[int], phase: str, batch: str
    ) -> list[TrialResult]: ...

    def failures(self, task: TaskSpec, method: Method) -> list[TrialFailure]: ...


class GuardedLab:
    """The `Lab` agents reach: dev PGR of the pipeline's own trials, within a per-agent budget.

    A new method is charged `charge(method)` calls, known before anything runs: a request whose
    charges exceed the agent's budget left is refused whole (`BudgetExhausted`, saying each heavy
    method's charge and the budget left) and runs no trial; a request within it runs, and a
    program that then used more CPU than it was charged is charged that (its budget can reach 0).

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
            left = self.budget - self._used(agent_id)
            charges = [self.charge(m) for m in new]
            if sum(charges) > left:
                raise BudgetExhausted(_refusal(self.task, new, charges, left))
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
                    charge = (
                        self.charge(method)
                        if isinstance(method, MethodSpec)
                        else charge_for(own, failed, len(seeds))
                    )
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

    def charge(self, method: Method) -> int:
        """What scoring `method` anew costs before it runs: a `MethodSpec` its `method_charge`; a
        program at least one call (charged by the CPU seconds it used once it has run)."""
        return method_charge(self.task, method) if isinstance(method, MethodSpec) else 1

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


def _refusal(task: TaskSpec, new: list[Method], charges: list[int], left: int) -> str:
    """Why a request is refused: the budget left, what it would cost and which methods cost more
    than one call, so the agent can ask for cheaper ones."""
    heavy = [
        f"{method.describe()} costs {charge} (estimated compute "
        f"{compute_ratio(task, method):.1f}x vanilla's)"
        for method, charge in zip(new, charges, strict=True)
        if charge > 1
    ]
    asked = (
        f"{left} dev-scoring call(s) left, {len(new)} new method(s) asked costing {sum(charges)}"
    )
    return asked + "".join(f"; {text}" for text in heavy)


def _failure_note(failed: list[TrialFailure], asked: int) -> str | None:
    """What the agent is told when its method failed on some seeds: how many and the first error."""
    if not failed:
        return None
    first = failed[0]
    return f"failed on {len(failed)} of {asked} seed(s); seed {first.seed}: {first.error}"
