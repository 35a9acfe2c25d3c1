"""One task's seeds reduced to its effect in PGR units, with what was doubtful said in words.

Effects use ONE denominator per task (the mean ceiling-weak gap over the task's seeds): a per-seed
PGR ratio explodes on seeds whose gap is small.
"""

import math
from dataclasses import dataclass

import numpy as np

from labgap.stats.intervals import Effect, paired_effect, welch_effect
from labgap.stats.schemas import SAME_ACCURACY, TaskSample


@dataclass(frozen=True)
class TaskData:
    """A task reduced to PGR-unit effects, with what was dropped or doubtful said in words."""

    name: str
    paired: bool
    n: int
    n_baseline: int
    n_method: int
    denominator: float | None
    effect: Effect
    sd: float | None
    prob_improvement: float | None
    flags: list[str]
    reasons: list[str]


def _nan_effect(delta: float = math.nan) -> Effect:
    return Effect(np.array(delta), np.array(math.nan), np.array(math.nan))


def _prob_improvement(baseline: np.ndarray, method: np.ndarray, paired: bool) -> float | None:
    """Paired: share of seeds where the method beats the baseline; unpaired: P(method > baseline)
    over all cross pairs (the Mann–Whitney AUC). Ties count one half."""
    if paired:
        if baseline.size == 0:
            return None
        wins = np.sign(method - baseline)
    else:
        if baseline.size == 0 or method.size == 0:
            return None
        wins = np.sign(method[:, None] - baseline[None, :])
    return float(np.mean((wins + 1.0) / 2.0))


def task_data(task: TaskSample) -> TaskData:
    """PGR-unit effects of one task: (method − baseline) / mean(ceiling − weak)."""
    flags: list[str] = []
    reasons: list[str] = []

    def unusable(flag: str, reason: str) -> TaskData:
        return TaskData(
            task.name,
            task.paired,
            0,
            0,
            0,
            None,
            _nan_effect(),
            None,
            None,
            [*flags, flag],
            [*reasons, reason],
        )

    if not task.seeds:
        return unusable("insufficient_seeds", "no seeds")
    gaps = np.array([s.ceiling_acc - s.weak_acc for s in task.seeds])
    degenerate = [s.seed for s, gap in zip(task.seeds, gaps, strict=True) if gap <= 0]
    if degenerate:
        flags.append("degenerate_seed_gap")
        reasons.append(
            f"seeds {degenerate} have ceiling_acc <= weak_acc (PGR undefined for those seeds); "
            "they are kept because the effect uses the task's mean gap, but check those runs"
        )
    denominator = float(gaps.mean())
    if denominator <= 0:
        return unusable(
            "undefined_denominator",
            f"mean ceiling - weak gap is {denominator:.4g} <= 0: PGR units are undefined",
        )
    if task.paired:
        pairs = [s for s in task.seeds if s.baseline_acc is not None and s.method_acc is not None]
        lone = [s.seed for s in task.seeds if (s.baseline_acc is None) != (s.method_acc is None)]
        if lone:
            flags.append("unmatched_seeds_dropped")
            reasons.append(
                f"paired design but seeds {lone} have only one arm: unequal seed counts; the "
                f"paired analysis uses the {len(pairs)} seeds that have both"
            )
        baseline = np.array([s.baseline_acc for s in pairs]) / denominator
        method = np.array([s.method_acc for s in pairs]) / denominator
        effect = paired_effect(method - baseline)
        n, n_baseline, n_method = len(pairs), len(pairs), len(pairs)
        sd = float(np.std(method - baseline, ddof=1)) if n >= 2 else None
        enough = n >= 2
        raw = np.array([s.method_acc - s.baseline_acc for s in pairs])
        constant = enough and np.ptp(raw) <= SAME_ACCURACY
    else:
        baseline = np.array([s.baseline_acc for s in task.seeds if s.baseline_acc is not None])
        method = np.array([s.method_acc for s in task.seeds if s.method_acc is not None])
        baseline, method = baseline / denominator, method / denominator
        n_baseline, n_method = baseline.size, method.size
        n = sum(s.baseline_acc is not None or s.method_acc is not None for s in task.seeds)
        enough = min(n_baseline, n_method) >= 2
        effect = welch_effect(baseline, method) if min(n_baseline, n_method) else _nan_effect()
        sd = math.hypot(np.std(baseline, ddof=1), np.std(method, ddof=1)) if enough else None
        constant = enough and max(np.ptp(baseline), np.ptp(method)) * denominator <= SAME_ACCURACY
    if not enough:
        flags.append("insufficient_seeds")
        reasons.append(
            f"{n_baseline} baseline and {n_method} method runs usable: a t interval needs "
            "at least 2 per arm"
        )
    elif constant:
        effect, sd = Effect(effect.delta, np.array(0.0), effect.df), None
        flags.append("zero_variance")
        reasons.append(
            "the effect is identical on every seed (zero variance): a t interval is undefined; "
            "check that the method changes anything"
        )
    return TaskData(
        name=task.name,
        paired=task.paired,
        n=n,
        n_baseline=n_baseline,
        n_method=n_method,
        denominator=denominator,
        effect=effect,
        sd=sd,
        prob_improvement=_prob_improvement(baseline, method, task.paired),
        flags=flags,
        reasons=reasons,
    )
