"""Stage 2 of a study as typed functions (search, or a given method, and the known-methods
baseline), and the types stages 3-5 share.

Stage 1 (task generation) is `labgap.plan.build_plan`; stages 3-5 (confirmation and transfer in
looks, then the gap analysis) are `labgap.replication`. The stages compute and return typed
results; they never touch the database. Trials come from the study's `TrialBook`, which hands
each finished batch to whoever records it, and the search reports forum posts and stopped agents
to a `SearchSink` as they happen, so a killed study loses only what was in flight.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Protocol

import polars as pl
from pydantic import BaseModel, ConfigDict

from labgap.engine.w2s import TrialResult
from labgap.errors import LabgapInputError
from labgap.methods.kinds import Method, parse_method
from labgap.methods.spec import PRESETS
from labgap.plan import StudyPlan
from labgap.search.agent import Agent, ForumPost, RoundOutcome
from labgap.search.hacking import HackingFlags
from labgap.search.known import KnownBaseline, tune_known_methods
from labgap.search.leaderboard import pick_winner, rank_methods
from labgap.search.scoring import GuardedLab, ScoringCall, mean_and_se
from labgap.trials import TrialBook

BASELINE = PRESETS["vanilla"]
"""What every winner is compared with, on the same seeds."""


class SearchSink(Protocol):
    """Where the search reports what must outlive a crash, as it happens."""

    def forum_posts(self, posts: list[ForumPost]) -> None: ...

    def agent_stopped(self, agent_id: int, round: int, reason: str) -> None: ...


class SearchResult(BaseModel):
    """Stage 2: the leaderboard of every scored method and the baseline's dev PGR."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    baseline_dev_pgr: float | None
    baseline_dev_se: float | None = None
    baseline_dev_n: int = 0
    leaderboard: pl.DataFrame
    calls: list[ScoringCall]

    @property
    def winner_entry(self) -> dict:
        return pick_winner(self.leaderboard)

    @property
    def winner(self) -> Method:
        return parse_method(self.winner_entry["method_json"])


class PairedSeed(BaseModel):
    """Winner and baseline on one seed of one task: a row of `transfer_trials` (test split)."""

    model_config = ConfigDict(frozen=True)
    target: str
    role: str
    task_hash: str
    seed: int
    baseline_method_hash: str
    winner_method_hash: str
    weak_acc: float
    ceiling_acc: float
    baseline_acc: float
    winner_acc: float
    baseline_pgr: float | None
    winner_pgr: float | None


class LabConfirmation(BaseModel):
    """Stage 3: the winner against the baseline on fresh lab seeds, and the hacking checks;
    beside them, the winner against the known-methods baseline on the same seeds."""

    model_config = ConfigDict(frozen=True)
    pairs: list[PairedSeed]
    hacking: HackingFlags
    known: KnownBaseline | None = None
    known_pairs: list[PairedSeed] = []


class TransferTrials(BaseModel):
    """Stage 4: the winner against the baseline on every held-out task and production target."""

    model_config = ConfigDict(frozen=True)
    pairs: list[PairedSeed]


def search(
    plan: StudyPlan,
    agents: list[Agent],
    lab: GuardedLab,
    book: TrialBook,
    sink: SearchSink,
    progress: Callable[[str], None],
) -> SearchResult:
    """Agent rounds on the lab task; every agent of a round sees the forum as the round began."""
    config, task = plan.config, plan.lab.spec
    baseline = book.trials(task, [BASELINE], config.search_seeds(), "search", "search-baseline")
    forum: list[ForumPost] = []
    stopped: set[int] = set()
    for round_index in range(config.rounds):
        active = [agent for agent in agents if agent.agent_id not in stopped]
        if not active:
            progress(f"round {round_index + 1}: every agent has stopped")
            break
        outcomes = _run_concurrently(active, round_index, list(forum), lab)
        posts = [post for outcome in outcomes for post in outcome.posts]
        sink.forum_posts(posts)  # one gate for the round's posts: the workers wait on it
        forum.extend(posts)
        scored = [score for outcome in outcomes for score in outcome.scored]
        for outcome in outcomes:
            if outcome.out_of_budget:
                stopped.add(outcome.agent_id)
                sink.agent_stopped(outcome.agent_id, round_index, outcome.stop_reason or "budget")
        best = max((s.dev_pgr for s in scored if s.dev_pgr is not None), default=None)
        progress(
            f"round {round_index + 1}/{config.rounds}: {len(scored)} method(s) scored, "
            f"best dev PGR this round {'—' if best is None else f'{best:.3f}'}"
        )
    board = rank_methods(book.of_phase(task, "search"), lab.calls, config.quick_seeds)
    dev = [t.pgr_dev for t in baseline if t.pgr_dev is not None]
    mean, se = mean_and_se(dev)
    return SearchResult(
        baseline_dev_pgr=mean,
        baseline_dev_se=se,
        baseline_dev_n=len(dev),
        leaderboard=board,
        calls=lab.calls,
    )


def _run_concurrently(
    agents: list[Agent], round_index: int, forum: list[ForumPost], lab: GuardedLab
) -> list[RoundOutcome]:
    """Every agent's round at once (their experiments share the workers; Claude agents' requests
    overlap up to the API's concurrency limit), outcomes in agent order. Each thread runs in a
    copy of the stage's context, so its agent round is a task run of this stage."""
    with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="agent") as pool:
        futures = [
            pool.submit(copy_context().run, agent.run_round, round_index, forum, lab)
            for agent in agents
        ]
        return [future.result() for future in futures]


def given(plan: StudyPlan, book: TrialBook, method: Method) -> SearchResult:
    """Stage 2 when the user names the method to replicate: no search. The method and the
    baseline run on the search seeds (the dev PGR the hacking checks compare with), and the
    method is the lab winner whatever its score."""
    config, task = plan.config, plan.lab.spec
    if method.method_hash == BASELINE.method_hash:
        raise LabgapInputError("candidate_method is the baseline (vanilla) itself")
    trials = book.trials(task, [BASELINE, method], config.search_seeds(), "search", "given")
    baseline, own = split_arms(trials, method)
    if not own:
        failed = book.failures(task, method)
        reason = failed[0].error if failed else "no trial succeeded"
        raise LabgapInputError(f"the given method failed on every search seed: {reason}")
    board = rank_methods(own, [], config.quick_seeds, given=method.method_hash)
    board = board.with_columns(min_seeds_met=True, leak_suspected=False)
    mean, se = mean_and_se([t.pgr_dev for t in baseline if t.pgr_dev is not None])
    return SearchResult(
        baseline_dev_pgr=mean,
        baseline_dev_se=se,
        baseline_dev_n=sum(t.pgr_dev is not None for t in baseline),
        leaderboard=board,
        calls=[],
    )


def known_methods(plan: StudyPlan, book: TrialBook) -> KnownBaseline:
    """The known-methods baseline, tuned on the search seeds with one agent's scoring budget."""
    config = plan.config
    return tune_known_methods(
        plan.lab.spec, book, config.search_seeds(), config.budget, config.seed
    )


def split_arms(
    trials: list[TrialResult], winner: Method
) -> tuple[list[TrialResult], list[TrialResult]]:
    baseline = [t for t in trials if t.method_hash == BASELINE.method_hash]
    return baseline, [t for t in trials if t.method_hash == winner.method_hash]
