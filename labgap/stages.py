"""Stages 2-5 of a study as typed functions: search, confirm, transfer, analyse.

Stage 1 (task generation) is `labgap.plan.build_plan`. The stages compute and return typed
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
from labgap.methods.spec import PRESETS, preset_name
from labgap.plan import StudyPlan
from labgap.search.agent import Agent, ForumPost, RoundOutcome
from labgap.search.hacking import HackingFlags, reward_hacking_flags
from labgap.search.known import KnownBaseline, tune_known_methods
from labgap.search.leaderboard import eligible, pick_winner, rank_methods
from labgap.search.scoring import GuardedLab, ScoringCall, mean_and_se
from labgap.stats.analysis import analyse_gap, compare_with_known, effect_estimate
from labgap.stats.schemas import (
    Candidate,
    GapAnalysis,
    GapConfig,
    SearchBaseline,
    SeedResult,
    TaskSample,
)
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
        snapshot, scored = list(forum), []
        for outcome in _run_concurrently(active, round_index, snapshot, lab):
            sink.forum_posts(outcome.posts)
            forum.extend(outcome.posts)
            scored.extend(outcome.scored)
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
    baseline, own = _arms(trials, method)
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


def confirm(
    plan: StudyPlan, book: TrialBook, found: SearchResult, known: KnownBaseline | None = None
) -> LabConfirmation:
    """The winner's-curse check: winner vs baseline on fresh seeds never used in the search;
    the known-methods baseline runs on the same seeds."""
    winner, entry, task = found.winner, found.winner_entry, plan.lab.spec
    arms = list(
        {m.method_hash: m for m in [BASELINE, winner, *([known.method] if known else [])]}.values()
    )
    trials = book.trials(task, arms, plan.config.fresh_seeds(), "confirm", f"confirm-{task.name}")
    baseline, own = _arms(trials, winner)
    pairs = _paired(task.name, "lab_confirmation", baseline, own)
    known_pairs = []
    if known is not None:
        known_arm = [t for t in trials if t.method_hash == known.method.method_hash]
        known_pairs = _paired(task.name, "versus_known", known_arm, own)
    naive = (
        None if found.baseline_dev_pgr is None else entry["mean_dev_pgr"] - found.baseline_dev_pgr
    )
    hacking = reward_hacking_flags(
        entry["mean_dev_pgr"],
        naive,
        effect_estimate(_sample(task.name, pairs)),
        _mean_top_class_share(own),
        _mean_top_class_share(baseline),
    )
    return LabConfirmation(pairs=pairs, hacking=hacking, known=known, known_pairs=known_pairs)


def transfer(plan: StudyPlan, book: TrialBook, winner: Method) -> TransferTrials:
    """Winner vs baseline on the same fresh seeds, on every held-out task and production target.
    The targets run at once (no target waits for another's slowest trial); pairs in plan order."""

    def target_pairs(planned) -> list[PairedSeed]:
        task = planned.spec
        trials = book.trials(
            task, [BASELINE, winner], plan.config.fresh_seeds(), "transfer", f"transfer-{task.name}"
        )
        return _paired(task.name, planned.role, *_arms(trials, winner))

    with ThreadPoolExecutor(max_workers=len(plan.targets), thread_name_prefix="target") as pool:
        futures = [pool.submit(copy_context().run, target_pairs, t) for t in plan.targets]
        return TransferTrials(pairs=[pair for future in futures for pair in future.result()])


def analyse(
    plan: StudyPlan,
    found: SearchResult,
    confirmation: LabConfirmation,
    transferred: TransferTrials,
) -> GapAnalysis:
    """Stage 5: the lab effect on fresh seeds, each target's effect and verdict.

    Beside them, the naive (selected) lab effect: each eligible candidate's mean dev PGR minus the
    baseline's on the same search seeds, the number a leaderboard would have announced.
    """
    lab = _sample(plan.lab.spec.name, confirmation.pairs)
    targets = [
        _sample(t.spec.name, [p for p in transferred.pairs if p.target == t.spec.name])
        for t in plan.targets
    ]
    candidates = []
    if found.baseline_dev_pgr is not None and found.calls:
        candidates = [
            Candidate(
                name=row["method_hash"],
                mean=row["mean_dev_pgr"] - found.baseline_dev_pgr,
                se=row["se_dev_pgr"] or 0.0,
                n=row["n_seeds"],
            )
            for row in eligible(found.leaderboard).iter_rows(named=True)
        ]
    analysis = analyse_gap(
        lab,
        targets,
        GapConfig(alpha=plan.config.alpha, rho_min=plan.config.rho_min),
        candidates=candidates or None,
        selected=found.winner_entry["method_hash"] if candidates else None,
        baseline=SearchBaseline(n=found.baseline_dev_n, se=found.baseline_dev_se)
        if found.baseline_dev_n
        else None,
    )
    known = confirmation.known
    if known is None:
        return analysis
    label = preset_name(known.method) or known.method.describe()
    versus = compare_with_known(
        _sample(plan.lab.spec.name, confirmation.known_pairs), label, known.method.method_hash
    )
    if known.method.method_hash == found.winner_entry["method_hash"]:
        versus = versus.model_copy(
            update={"verdict": "same_method", "reason": f"the winner is the known method {label}"}
        )
    return analysis.model_copy(update={"versus_known": versus})


def _arms(trials: list[TrialResult], winner: Method) -> tuple[list[TrialResult], list[TrialResult]]:
    baseline = [t for t in trials if t.method_hash == BASELINE.method_hash]
    return baseline, [t for t in trials if t.method_hash == winner.method_hash]


def _paired(
    target: str, role: str, baseline: list[TrialResult], winner: list[TrialResult]
) -> list[PairedSeed]:
    """One pair per seed that both arms ran (test-split accuracies)."""
    by_seed = {trial.seed: trial for trial in baseline}
    return [
        PairedSeed(
            target=target,
            role=role,
            task_hash=trial.task_hash,
            seed=trial.seed,
            baseline_method_hash=base.method_hash,
            winner_method_hash=trial.method_hash,
            weak_acc=trial.weak_acc_test,
            ceiling_acc=trial.ceiling_acc_test,
            baseline_acc=base.student_acc_test,
            winner_acc=trial.student_acc_test,
            baseline_pgr=base.pgr_test,
            winner_pgr=trial.pgr_test,
        )
        for trial in winner
        if (base := by_seed.get(trial.seed)) is not None
    ]


def _sample(name: str, pairs: list[PairedSeed]) -> TaskSample:
    return TaskSample(
        name=name,
        seeds=[
            SeedResult(
                seed=pair.seed,
                weak_acc=pair.weak_acc,
                ceiling_acc=pair.ceiling_acc,
                baseline_acc=pair.baseline_acc,
                method_acc=pair.winner_acc,
            )
            for pair in sorted(pairs, key=lambda pair: pair.seed)
        ],
    )


def _mean_top_class_share(trials: list[TrialResult]) -> float:
    return sum(t.student_top_class_share for t in trials) / max(1, len(trials))
