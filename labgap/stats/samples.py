"""One task's seeds reduced to its effect in PGR units, with what was doubtful said in words.

Effects use ONE denominator per task (the mean ceiling-weak gap over the task's seeds): a per-seed
PGR ratio explodes on seeds whose gap is small. That denominator is estimated from the same seeds,
so a paired effect's SE counts its noise too (`pgr_values`).
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


def pgr_values(weak, ceiling, baseline, method) -> np.ndarray:
    """Per-seed values (seeds on the last axis, any leading study axes) whose paired t summary is
    the PGR effect R = mean(d) / mean(g), d = method − baseline and g = ceiling − weak per seed,
    with the divisor's noise counted: R + (d_i − R·g_i) / mean(g), the delta-method
    linearisation of a ratio of means. Their mean is R; their SD carries the gap's seed-to-seed
    noise and its correlation with the effect.

    The plain d_i / mean(g) ignores both and under-covered (0.84–0.93 at the BBC task's sizes
    unless the effect rises with the gap, 0.81–0.92 with a 0.06 gap); these values cover
    0.94–0.96 with 4–12 seeds (tests/test_stats_calibration_divisor.py), and still 0.94 with 3
    seeds and a gap SD half its mean, so an exact Fieller-type pivot is not needed. With the
    same gap on every seed they are d_i / gap, as before.
    """
    diffs = np.asarray(method, dtype=float) - np.asarray(baseline, dtype=float)
    gaps = np.asarray(ceiling, dtype=float) - np.asarray(weak, dtype=float)
    mean_gap = gaps.mean(axis=-1, keepdims=True)
    ratio = diffs.mean(axis=-1, keepdims=True) / mean_gap
    return ratio + (diffs - ratio * gaps) / mean_gap


def task_data(task: TaskSample) -> TaskData:
    """PGR-unit effects of one task: (method − baseline) / mean(ceiling − weak).

    Paired: the ratio of means over the seeds that have both arms, its SE counting the noise of
    the mean gap (`pgr_values`). Unpaired: Welch's t on the two arms, each divided by the mean gap
    of all seeds taken as known: the divisor's noise is NOT in that SE, which therefore runs
    small when the gap is small or varies much from seed to seed (the arms sit on different
    seeds, so there are no per-seed pairs of effect and gap to linearise).
    """
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
    pairs = [s for s in task.seeds if s.baseline_acc is not None and s.method_acc is not None]
    if task.paired and pairs:  # the divisor comes from the seeds the effect uses
        gaps = np.array([s.ceiling_acc - s.weak_acc for s in pairs])
    denominator = float(gaps.mean())
    if denominator <= 0:
        return unusable(
            "undefined_denominator",
            f"mean ceiling - weak gap is {denominator:.4g} <= 0: PGR units are undefined",
        )
    if task.paired:
        lone = [s.seed for s in task.seeds if (s.baseline_acc is None) != (s.method_acc is None)]
        if lone:
            flags.append("unmatched_seeds_dropped")
            reasons.append(
                f"paired design but seeds {lone} have only one arm: unequal seed counts; the "
                f"paired analysis uses the {len(pairs)} seeds that have both"
            )
        weak, ceiling, baseline, method = (
            np.array([getattr(s, field) for s in pairs])
            for field in ("weak_acc", "ceiling_acc", "baseline_acc", "method_acc")
        )
        n, n_baseline, n_method = len(pairs), len(pairs), len(pairs)
        values = pgr_values(weak, ceiling, baseline, method) if n else np.empty(0)
        effect = paired_effect(values)
        enough = n >= 2
        sd = float(np.std(values, ddof=1)) if enough else None
        # identical = the same share of the gap on every seed (d_i = R·g_i), in accuracy units
        constant = enough and np.ptp(values) * denominator <= SAME_ACCURACY
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
