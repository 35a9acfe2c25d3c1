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

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import TPESampler
from optuna.trial import TrialState

from labgap.methods.kinds import Method
from labgap.methods.spec import PRESETS, MethodSpec, preset_name
from labgap.programs.catalog import library_program
from labgap.search.agent import (
    ForumPost,
    Lab,
    Proposal,
    RoundOutcome,
    ScoredMethod,
)
from labgap.search.directions import ResearchDirection
from labgap.search.space import Choice, FloatRange
from labgap.search.variation import vary

optuna.logging.set_verbosity(optuna.logging.WARNING)

MAX_DRAWS = 30
"""Draws in a row that only repeat earlier methods before the agent treats its space as exhausted."""

MAX_IDEA_CHARS = 60


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
        self._budget_left = scoring_budget
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
        """Try the first known method (preset, or the direction's library program at its
        defaults) that lies in this direction before exploring.

        Researchers start from the literature: the seed study's humans began with four known
        methods. Only one is queued, so the sampler's queue is empty again before any borrowing
        (which relies on its own queued trial being the next one asked).
        """
        if self.direction.program is not None:
            params = self.direction.params_for(library_program(self.direction.program))
            if params is not None:
                self._study.enqueue_trial(params)
            return
        for name, preset in PRESETS.items():
            params = self.direction.params_for(preset) if name != "vanilla" else None
            if params is not None:
                self._study.enqueue_trial(params)
                return

    def run_round(self, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
        """Propose up to `proposals_per_round` methods, learn their dev PGR, post the best so far.

        The agent keeps the budget the lab reports after each call (a heavy method or a program
        that used much compute costs several calls), so a replayed round, answered from the
        record, asks for exactly what it asked the first time. A proposal its budget left cannot
        pay for is dropped unscored (see `_affordable`). Once its budget is used up it stops for
        good but keeps posting its best."""
        left = self._proposals_per_round
        if self._budget_left is not None:
            left = min(left, self._budget_left)
        proposals = self._affordable(self.propose(round, left, forum), lab)
        calls = lab.score(self.agent_id, round, [p.method for p in proposals]) if proposals else []
        if calls and self._budget_left is not None:
            self._budget_left = min(call.budget_left for call in calls)
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

    def _affordable(self, proposals: list[Proposal], lab: Lab) -> list[Proposal]:
        """The proposals the budget left pays for, in order (the lab would refuse the whole
        request otherwise). The others are never scored: the sampler is told they failed, so it
        moves away from methods this agent can no longer afford."""
        if self._budget_left is None:
            return proposals
        kept, left = [], self._budget_left
        for proposal in proposals:
            charge = lab.charge(proposal.method)
            if charge <= left:
                kept.append(proposal)
                left -= charge
            else:
                self.observe(proposal, None, 0)
        return kept

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
                f"{best.proposal.method.describe()}: best of {n_scored} scored in "
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
            method, changes = vary(post.method, self._rng)
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
            known = preset_name(method) if isinstance(method, MethodSpec) else None
            if known is not None:
                rationale = f"start from the known method '{known}': {method.describe()}"
            elif exploring:
                rationale = f"explore: {method.describe()} within '{self.direction.title}'"
            else:
                rationale = (
                    f"exploit: TPE around best (dev PGR {self._study.best_value:.2f}): "
                    f"{method.describe()}"
                )
            return self._record(round, method, rationale, trial.number, borrowed_from=None)
        return None

    def _record(
        self,
        round: int,
        method: Method,
        rationale: str,
        trial_number: int | None,
        borrowed_from: int | None,
    ) -> Proposal:
        proposal = Proposal(agent_id=self.agent_id, round=round, method=method, rationale=rationale)
        self._records[method.method_hash] = _Record(proposal, trial_number, borrowed_from)
        return proposal


def _idea(method: Method) -> str:
    """The method in full when that is short, else its family, so rationales stay one glance."""
    description = method.describe()
    return description if len(description) <= MAX_IDEA_CHARS else f"{method.family} idea"


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
