"""Stages 3-5: the winner against the baseline on fresh seeds, in looks, and the gap analysis.

Confirmation (the lab effect, the winner's-curse check) and transfer (every held-out task and
production target) run as one sequence of looks: every task starts with the first look's seeds
at once; after each look the verdict rule decides which questions stay open, and only those get
the next batch of seeds (the lab first: targets are judged once there is an effect to transfer),
until each is decided, at its seed cap, or out of the study's trial budget. Every interval is a
repeated confidence interval at its look, so the stopping keeps the error rates. A resumed study
re-derives the same looks from its recorded trials.
"""

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import numpy as np
from pydantic import BaseModel, ConfigDict

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialResult
from labgap.methods.spec import preset_name
from labgap.plan import StudyPlan
from labgap.search.hacking import reward_hacking_flags
from labgap.search.known import KnownBaseline
from labgap.search.leaderboard import eligible
from labgap.stages import (
    BASELINE,
    LabConfirmation,
    PairedSeed,
    SearchResult,
    TransferTrials,
    split_arms,
)
from labgap.stats.analysis import analyse_gap
from labgap.stats.decision import next_looks
from labgap.stats.known import compare_with_known, effect_estimate
from labgap.stats.schemas import (
    VERDICTS,
    Candidate,
    GapAnalysis,
    GapConfig,
    SearchBaseline,
    SeedResult,
    TaskSample,
)
from labgap.stats.sequential import StopReason
from labgap.trials import TrialBook

LAB_ROLE = "lab_confirmation"


class TaskLooks(BaseModel):
    """How far one task went: its last look, its paired seeds and why it stopped."""

    model_config = ConfigDict(frozen=True)
    task: str
    role: str
    look: int
    seeds: int
    stop_reason: StopReason


class Replication(BaseModel):
    """Stages 3-4: the lab confirmation, the transfer trials and each task's looks."""

    model_config = ConfigDict(frozen=True)
    confirmation: LabConfirmation
    transferred: TransferTrials
    looks: list[TaskLooks]

    def of(self, task: str) -> TaskLooks:
        return next(look for look in self.looks if look.task == task)


class LookBatch(BaseModel):
    """What one task's look asks the trial book for: the seeds it adds, labelled."""

    model_config = ConfigDict(frozen=True)
    task: TaskSpec
    seeds: list[int]
    phase: str
    batch: str


def look_batch(plan: StudyPlan, task: TaskSpec, role: str, look: int) -> LookBatch:
    sizes = plan.config.schedule.sizes
    seeds = plan.config.fresh_seeds(sizes[look - 1])[sizes[look - 2] if look > 1 else 0 :]
    phase = "confirm" if role == LAB_ROLE else "transfer"
    return LookBatch(task=task, seeds=seeds, phase=phase, batch=f"{phase}-{task.name}-look{look}")


def first_look_baselines(plan: StudyPlan) -> list[LookBatch]:
    """Every task's first look: its baseline trials are needed whichever method wins, so they
    can run while the search leaves workers idle."""
    return [
        look_batch(plan, plan.lab.spec, LAB_ROLE, 1),
        *(look_batch(plan, target.spec, target.role, 1) for target in plan.targets),
    ]


def gap_config(plan: StudyPlan) -> GapConfig:
    config = plan.config
    return GapConfig(
        alpha=config.alpha, rho_min=config.rho_min, design=config.design, schedule=config.schedule
    )


def replicate(
    plan: StudyPlan,
    book: TrialBook,
    found: SearchResult,
    known: KnownBaseline | None = None,
    progress: Callable[[int, str], None] = lambda added, what: None,
) -> Replication:
    """Confirmation and transfer in looks (see the module's docstring)."""
    config, winner = plan.config, found.winner
    sizes, budget = config.schedule.sizes, config.replication_budget
    lab_arms = list(
        {m.method_hash: m for m in [BASELINE, winner, *([known.method] if known else [])]}.values()
    )
    tasks = [
        (plan.lab.spec, LAB_ROLE, lab_arms),
        *((t.spec, t.role, [BASELINE, winner]) for t in plan.targets),
    ]
    arms_per_task = [len(arms) for _, _, arms in tasks]
    looks = np.ones(len(tasks), dtype=int)
    out_of_budget = np.zeros(len(tasks), dtype=bool)

    def new_trials(index: int) -> list[TrialResult]:
        """The trials of one task's latest look: only the seeds it adds."""
        task, role, arms = tasks[index]
        asked = look_batch(plan, task, role, int(looks[index]))
        return book.trials(task, arms, asked.seeds, asked.phase, asked.batch)

    trials: list[list[TrialResult]] = [[] for _ in tasks]
    more = np.ones(len(tasks), dtype=bool)
    while True:
        with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="task") as pool:
            running = {
                i: pool.submit(copy_context().run, new_trials, i) for i in np.flatnonzero(more)
            }
            for index, future in running.items():
                trials[index] = trials[index] + future.result()
        pairs = [
            _paired(task.name, role, *split_arms(t, winner))
            for (task, role, _), t in zip(tasks, trials, strict=True)
        ]
        current = [
            TaskLooks(task=task.name, role=role, look=int(k), seeds=len(p), stop_reason="decided")
            for (task, role, _), k, p in zip(tasks, looks, pairs, strict=True)
        ]
        analysis = _analyse_looks(
            plan,
            [_sample(p, at) for p, at in zip(pairs, current, strict=True)],
        )
        verdicts = np.array([VERDICTS.index(t.verdict) for t in analysis.targets])
        lab_more, targets_more = next_looks(
            np.array(analysis.lab.positive),
            np.array(analysis.lab.negative),
            verdicts,
            np.array(looks[0]),
            looks[1:],
            len(sizes),
        )
        more = np.concatenate([[bool(lab_more)], targets_more]) & (config.design == "sequential")
        more, refused = _within_budget(more, looks, sizes, arms_per_task, budget)
        out_of_budget |= refused
        if not more.any():
            break
        added = sum(_batch_cost(looks[i], sizes, arms_per_task[i]) for i in np.flatnonzero(more))
        looks = looks + more
        progress(
            added,
            "next look: "
            + ", ".join(
                f"{tasks[i][0].name} to {sizes[looks[i] - 1]} seeds" for i in np.flatnonzero(more)
            ),
        )
    reasons = _stop_reasons(config.design, analysis, looks, len(sizes), out_of_budget)
    task_looks = [
        TaskLooks(task=task.name, role=role, look=int(k), seeds=len(p), stop_reason=reason)
        for (task, role, _), k, p, reason in zip(tasks, looks, pairs, reasons, strict=True)
    ]
    return Replication(
        confirmation=_confirmation(found, trials[0], pairs[0], known, task_looks[0]),
        transferred=TransferTrials(pairs=[pair for p in pairs[1:] for pair in p]),
        looks=task_looks,
    )


def _batch_cost(look: int, sizes: list[int], arms: int) -> int:
    """Trials the next look after `look` adds to one task."""
    return (sizes[look] - sizes[look - 1]) * arms


def _within_budget(
    more: np.ndarray, looks: np.ndarray, sizes: list[int], arms: list[int], budget: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The next batches that fit the study's trial budget, in plan order (the lab first);
    returns (granted, refused). Trials already run count whether or not they were reused."""
    granted, refused = more.copy(), np.zeros_like(more)
    if budget is None:
        return granted, refused
    spent = sum(sizes[k - 1] * n for k, n in zip(looks, arms, strict=True))
    for index in np.flatnonzero(more):
        cost = _batch_cost(looks[index], sizes, arms[index])
        if spent + cost > budget:
            granted[index], refused[index] = False, True
        else:
            spent += cost
    return granted, refused


def _stop_reasons(
    design, analysis: GapAnalysis, looks, n_looks: int, out_of_budget
) -> list[StopReason]:
    """Why each task (the lab first) got no more seeds."""
    if design == "fixed":
        return ["fixed"] * len(looks)

    def reason(decided: bool, index: int) -> StopReason:
        if decided:
            return "decided"
        if out_of_budget[index]:
            return "budget"
        return "cap" if looks[index] >= n_looks else "no_lab_effect"

    lab = analysis.lab
    reasons = [reason(lab.positive or lab.negative, 0)]
    for j, target in enumerate(analysis.targets, start=1):
        judged = reason(target.verdict != "inconclusive", j) if lab.positive else "no_lab_effect"
        reasons.append(judged)
    return reasons


def _analyse_looks(
    plan: StudyPlan,
    samples: list[TaskSample],
    found: SearchResult | None = None,
) -> GapAnalysis:
    """The gap analysis of the tasks at their current looks (the lab first). With the search
    result, the naive and hybrid winner figures are added beside the lab effect."""
    candidates, baseline = [], None
    if found is not None and found.baseline_dev_pgr is not None and found.calls:
        candidates = [
            Candidate(
                name=row["method_hash"],
                mean=row["mean_dev_pgr"] - found.baseline_dev_pgr,
                se=row["se_dev_pgr"] or 0.0,
                n=row["n_seeds"],
            )
            for row in eligible(found.leaderboard).iter_rows(named=True)
        ]
        if found.baseline_dev_n:
            baseline = SearchBaseline(n=found.baseline_dev_n, se=found.baseline_dev_se)
    return analyse_gap(
        samples[0],
        samples[1:],
        gap_config(plan),
        candidates=candidates or None,
        selected=found.winner_entry["method_hash"] if candidates else None,
        baseline=baseline,
    )


def analyse(plan: StudyPlan, found: SearchResult, replication: Replication) -> GapAnalysis:
    """Stage 5: the lab effect on fresh seeds, each target's effect and verdict, the two
    headline verdicts; beside them, the naive (selected) lab effect: each eligible candidate's
    mean dev PGR minus the baseline's on the same search seeds, the number a leaderboard would
    have announced, and the winner against the known-methods baseline."""
    confirmation = replication.confirmation
    lab_looks = replication.of(plan.lab.spec.name)
    samples = [_sample(confirmation.pairs, lab_looks)]
    for target in plan.targets:
        pairs = [p for p in replication.transferred.pairs if p.target == target.spec.name]
        samples.append(_sample(pairs, replication.of(target.spec.name)))
    analysis = _analyse_looks(plan, samples, found)
    known = confirmation.known
    if known is None:
        return analysis
    label = preset_name(known.method) or known.method.describe()
    versus = compare_with_known(
        _sample(confirmation.known_pairs, lab_looks),
        label,
        known.method.method_hash,
        gap_config(plan),
    )
    if known.method.method_hash == found.winner_entry["method_hash"]:
        versus = versus.model_copy(
            update={"verdict": "same_method", "reason": f"the winner is the known method {label}"}
        )
    return analysis.model_copy(update={"versus_known": versus})


def _confirmation(
    found: SearchResult,
    trials: list[TrialResult],
    pairs: list[PairedSeed],
    known: KnownBaseline | None,
    lab_looks: TaskLooks,
) -> LabConfirmation:
    """The lab's pairs, the winner against the known methods, and the reward-hacking checks."""
    entry, winner = found.winner_entry, found.winner
    baseline, own = split_arms(trials, winner)
    known_pairs = []
    if known is not None:
        known_arm = [t for t in trials if t.method_hash == known.method.method_hash]
        known_pairs = _paired(lab_looks.task, "versus_known", known_arm, own)
    naive = (
        None if found.baseline_dev_pgr is None else entry["mean_dev_pgr"] - found.baseline_dev_pgr
    )
    hacking = reward_hacking_flags(
        entry["mean_dev_pgr"],
        naive,
        effect_estimate(_sample(pairs, lab_looks)),
        _mean_top_class_share(own),
        _mean_top_class_share(baseline),
    )
    return LabConfirmation(pairs=pairs, hacking=hacking, known=known, known_pairs=known_pairs)


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


def _sample(pairs: list[PairedSeed], looks: TaskLooks) -> TaskSample:
    """The pairs of one task as the gap analysis reads them (the lab's role is not used)."""
    return TaskSample(
        name=looks.task,
        role="production" if looks.role == LAB_ROLE else looks.role,
        look=looks.look,
        stop_reason=looks.stop_reason,
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
