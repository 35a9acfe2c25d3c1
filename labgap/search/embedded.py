"""The offline agent backend: an Optuna optimiser per agent, searching its research direction.

Each agent explores its direction with random startup trials, then exploits with TPE; when the
forum shows a better method than its own best it may borrow that idea with a small variation.
Everything random flows from the agent's seed, so replaying the same propose/observe calls with the
same scores reproduces the same proposals: that is how the flow resumes a crashed study.
"""

import json
import math
import random
from dataclasses import dataclass
from typing import Any

import optuna
from annotated_types import Ge, Le
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import TPESampler
from optuna.trial import TrialState

from labgap.methods.spec import PRESETS, MethodSpec, preset_name
from labgap.search.agent import (
    ForumPost,
    Lab,
    Proposal,
    RoundOutcome,
    ScoredMethod,
    describe_method,
)
from labgap.search.directions import Choice, FloatRange, ResearchDirection

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_DRAWS = 30
"""Draws in a row that only repeat earlier methods before the agent treats its space as exhausted."""

# Fields a borrowed idea is varied in: scale-free ones are multiplied, bounded ones are shifted.
# Structural choices (loss, hard labels, hidden, self-training rounds) are kept: they are the idea.
SCALED_FIELDS = ("knn_k", "epochs", "lr", "batch_size")
SHIFTED_FIELDS = (
    "aux_weight",
    "warmup",
    "label_smoothing",
    "confident_fraction",
    "knn_mix",
    "weight_decay",
    "dropout",
)
MAX_IDEA_CHARS = 60
SCALE_FACTORS = (0.5, 0.7, 1.4, 2.0)
MAX_SHIFT = 0.2
"""Largest shift of a bounded field, as a fraction of its valid range (the smallest is 0.05)."""


@dataclass
class _Record:
    proposal: Proposal
    trial_number: int | None
    """The Optuna trial, or None when the method lies outside the agent's direction."""
    borrowed_from: int | None
    observed: bool = False
    dev_pgr: float | None = None
    n_seeds: int = 0


class EmbeddedAgent:
    """An optimiser-driven agent: explore (random), exploit (TPE), borrow (forum).

    Each round, when another agent's post beats this agent's best, one slot is (with probability
    `borrow_probability`, drawn from the agent's own RNG) a variation of that post's method: enqueued
    into the Optuna study when it lies in this agent's direction, proposed directly otherwise. The
    other slots come from the sampler: random for the first `n_startup_trials` scored trials, TPE
    after. A method is never proposed twice; when the sampler only repeats itself, fewer come back.
    """

    def __init__(
        self,
        agent_id: int,
        direction: ResearchDirection,
        seed: int,
        *,
        proposals_per_round: int = 1,
        scoring_budget: int | None = None,
        n_startup_trials: int = 5,
        borrow_probability: float = 0.5,
    ):
        if n_startup_trials < 1:
            raise ValueError(f"n_startup_trials must be at least 1, got {n_startup_trials}")
        if not 0.0 <= borrow_probability <= 1.0:
            raise ValueError(f"borrow_probability must be in [0, 1], got {borrow_probability}")
        self.agent_id = agent_id
        self.direction = direction
        self._proposals_per_round = proposals_per_round
        self._scoring_budget = scoring_budget
        self._n_startup_trials = n_startup_trials
        self._borrow_probability = borrow_probability
        self._rng = random.Random(seed)
        self._distributions = _optuna_distributions(direction)
        self._study = optuna.create_study(
            direction="maximize",
            sampler=TPESampler(seed=seed, n_startup_trials=n_startup_trials),
        )
        self._records: dict[str, _Record] = {}
        self._start_from_known_method()

    def _start_from_known_method(self) -> None:
        """Try the first known method (preset) that lies in this direction before exploring.

        Researchers start from the literature: the seed study's humans began with four known
        methods. Only one is queued, so the sampler's queue is empty again before any borrowing
        (which relies on its own queued trial being the next one asked).
        """
        for name, preset in PRESETS.items():
            params = self.direction.params_for(preset) if name != "vanilla" else None
            if params is not None:
                self._study.enqueue_trial(params)
                return

    def run_round(self, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
        """Propose up to `proposals_per_round` methods, learn their dev PGR, post the best so far.

        The agent counts its own scoring calls (one per proposal), so a replayed round asks for
        exactly what it asked the first time. Once its budget is used up it stops for good but
        keeps posting its best."""
        left = self._proposals_per_round
        if self._scoring_budget is not None:
            left = min(left, self._scoring_budget - len(self._records))
        proposals = self.propose(round, left, forum)
        calls = lab.score(self.agent_id, round, [p.method for p in proposals]) if proposals else []
        scored = []
        for proposal, call in zip(proposals, calls, strict=True):
            n_seeds = len(json.loads(call.seeds))
            self.observe(proposal, call.dev_pgr, n_seeds)
            scored.append(
                ScoredMethod(
                    round=round, method=proposal.method, dev_pgr=call.dev_pgr, n_seeds=n_seeds
                )
            )
        post = self.finding(round)
        return RoundOutcome(
            agent_id=self.agent_id,
            round=round,
            scored=scored,
            posts=[] if post is None else [post],
            stop_reason="scoring budget used up" if left <= 0 else None,
            out_of_budget=left <= 0,
        )

    def propose(self, round: int, n: int, forum: list[ForumPost]) -> list[Proposal]:
        proposals: list[Proposal] = []
        if n <= 0:
            return proposals
        better_post = self._better_post(forum)
        if better_post is not None and self._rng.random() < self._borrow_probability:
            borrowed = self._borrow(round, better_post)
            if borrowed is not None:
                proposals.append(borrowed)
        while len(proposals) < n:
            sampled = self._sample(round)
            if sampled is None:
                break
            proposals.append(sampled)
        return proposals

    def observe(self, proposal: Proposal, dev_pgr: float | None, n_seeds: int) -> None:
        record = self._records.get(proposal.method.method_hash)
        if record is None or record.proposal != proposal:
            raise ValueError(f"agent {self.agent_id} did not propose {proposal!r}")
        if record.observed:
            raise ValueError(
                f"agent {self.agent_id} already observed {proposal.method.canonical_json()}"
            )
        score = dev_pgr if dev_pgr is not None and math.isfinite(dev_pgr) else None
        record.observed, record.dev_pgr, record.n_seeds = True, score, n_seeds
        if record.trial_number is None:
            return
        if score is None:
            self._study.tell(record.trial_number, state=TrialState.FAIL)
        else:
            self._study.tell(record.trial_number, score)

    def finding(self, round: int) -> ForumPost | None:
        best = self._best_record()
        if best is None:
            return None
        n_scored = sum(record.dev_pgr is not None for record in self._records.values())
        origin = (
            "" if best.borrowed_from is None else f", built on agent {best.borrowed_from}'s idea"
        )
        return ForumPost(
            round=round,
            agent_id=self.agent_id,
            method=best.proposal.method,
            dev_pgr=best.dev_pgr,
            n_seeds=best.n_seeds,
            rationale=(
                f"{describe_method(best.proposal.method)}: best of {n_scored} scored in "
                f"'{self.direction.title}'{origin}"
            ),
        )

    def _best_record(self) -> _Record | None:
        scored = [record for record in self._records.values() if record.dev_pgr is not None]
        return max(scored, key=lambda record: record.dev_pgr, default=None)

    def _better_post(self, forum: list[ForumPost]) -> ForumPost | None:
        """The best other agent's post that beats this agent's own best (ties: lowest agent id)."""
        best = self._best_record()
        bar = -math.inf if best is None else best.dev_pgr
        better = [
            post
            for post in forum
            if post.agent_id != self.agent_id
            and post.dev_pgr is not None
            and math.isfinite(post.dev_pgr)
            and post.dev_pgr > bar
        ]
        return max(
            better, key=lambda post: (post.dev_pgr, -post.agent_id, post.round), default=None
        )

    def _borrow(self, round: int, post: ForumPost) -> Proposal | None:
        for _ in range(MAX_DRAWS):
            method, changes = vary_method(post.method, self._rng)
            if method.method_hash not in self._records:
                break
        else:
            return None
        trial_number = None
        params = self.direction.params_for(method)
        if params is not None:
            self._study.enqueue_trial(params)
            trial_number = self._study.ask(self._distributions).number
        rationale = (
            f"borrow agent {post.agent_id}'s {_idea(post.method)} (dev PGR {post.dev_pgr:.2f}) "
            f"with {', '.join(changes)}"
        )
        return self._record(round, method, rationale, trial_number, borrowed_from=post.agent_id)

    def _sample(self, round: int) -> Proposal | None:
        completed = self._study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        exploring = len(completed) < self._n_startup_trials
        for _ in range(MAX_DRAWS):
            trial = self._study.ask(self._distributions)
            method = self.direction.method_from_params(trial.params)
            if method.method_hash in self._records:
                # A repeat teaches the sampler nothing; failed trials are ignored by TPE.
                self._study.tell(trial, state=TrialState.FAIL)
                continue
            known = preset_name(method)
            if known is not None:
                rationale = f"start from the known method '{known}': {describe_method(method)}"
            elif exploring:
                rationale = f"explore: {describe_method(method)} within '{self.direction.title}'"
            else:
                rationale = (
                    f"exploit: TPE around best (dev PGR {self._study.best_value:.2f}): "
                    f"{describe_method(method)}"
                )
            return self._record(round, method, rationale, trial.number, borrowed_from=None)
        return None

    def _record(
        self,
        round: int,
        method: MethodSpec,
        rationale: str,
        trial_number: int | None,
        borrowed_from: int | None,
    ) -> Proposal:
        proposal = Proposal(agent_id=self.agent_id, round=round, method=method, rationale=rationale)
        self._records[method.method_hash] = _Record(proposal, trial_number, borrowed_from)
        return proposal


def vary_method(method: MethodSpec, rng: random.Random) -> tuple[MethodSpec, list[str]]:
    """`method` with one or two of its active numeric fields nudged within MethodSpec's valid
    ranges (every nudge is a real change); also returns the changes as text ("lr 0.001→0.0014")."""
    candidates = [name for name in SCALED_FIELDS + SHIFTED_FIELDS if _is_active(method, name)]
    names = rng.sample(candidates, k=min(len(candidates), rng.choice((1, 2))))
    updates: dict[str, Any] = {}
    changes = []
    for name in sorted(names, key=list(MethodSpec.model_fields).index):
        old = getattr(method, name)
        updates[name] = _nudge(name, old, rng)
        changes.append(f"{name} {_format(old)}→{_format(updates[name])}")
    return MethodSpec.model_validate({**method.model_dump(), **updates}), changes


def _nudge(name: str, old: float | int, rng: random.Random) -> float | int:
    """Scale a scale-free field by 0.5–2x, or shift a bounded one by 5–20% of its range, turning
    back at a bound. Every scaled range spans more than 4x, so one of the two directions fits."""
    low, high = _valid_range(name)
    if name in SCALED_FIELDS:
        factor = rng.choice(SCALE_FACTORS)
        if not low <= old * factor <= high:
            factor = 1 / factor
        if isinstance(old, int):
            new = round(old * factor)
            if new == old:
                new = old + (1 if factor > 1 else -1)
        else:
            new = float(f"{old * factor:.3g}")
    else:
        shift = rng.uniform(0.05, MAX_SHIFT) * (high - low) * rng.choice((-1, 1))
        if not low <= old + shift <= high:
            shift = -shift
        new = round(old + shift, 3)
    return min(max(new, low), high)


def _is_active(method: MethodSpec, name: str) -> bool:
    """Whether changing `name` changes the method: unset recipe fields and the knobs of a switched-
    off component (aux weight under plain xent, kNN mix without kNN) are inactive."""
    if getattr(method, name) is None:
        return False
    if name in ("aux_weight", "warmup"):
        return method.loss != "xent"
    if name in ("knn_k", "knn_mix"):
        return method.knn_k != 0
    return True


def _valid_range(name: str) -> tuple[float, float]:
    if name == "knn_k":
        return 5, 50  # MethodSpec allows 0 (off) or 5–50; a borrowed kNN idea stays on
    rules = MethodSpec.model_fields[name].metadata
    low = next(rule.ge for rule in rules if isinstance(rule, Ge))
    high = next(rule.le for rule in rules if isinstance(rule, Le))
    return low, high


def _idea(method: MethodSpec) -> str:
    """The method in full when that is short, else its family, so rationales stay one glance."""
    description = describe_method(method)
    return description if len(description) <= MAX_IDEA_CHARS else f"{method.family} idea"


def _format(value: float | int) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _optuna_distributions(direction: ResearchDirection) -> dict[str, BaseDistribution]:
    distributions: dict[str, BaseDistribution] = {}
    for name, dimension in direction.space.items():
        if isinstance(dimension, Choice):
            distributions[name] = CategoricalDistribution(dimension.options)
        elif isinstance(dimension, FloatRange):
            distributions[name] = FloatDistribution(
                dimension.low, dimension.high, log=dimension.log
            )
        else:
            distributions[name] = IntDistribution(dimension.low, dimension.high, log=dimension.log)
    return distributions
