"""Checks of labgap.stats.samples: a task's seeds reduced to PGR-unit effects, seen through
`analyse_gap`; degenerate data gives flags and reasons, never NaN."""

import math

import numpy as np
import pytest
from scipy import stats
from test_stats_analysis import (
    CEILING,
    GAP,
    GOOD,
    LAB,
    WEAK,
    WEAK_TARGET,
    assert_clean,
    paired_task,
    task_with_effects,
)

from labgap.stats.analysis import analyse_gap
from labgap.stats.schemas import GapConfig, SeedResult, TaskSample


def pgr(task: TaskSample) -> tuple[np.ndarray, np.ndarray]:
    baseline = np.array([s.baseline_acc for s in task.seeds if s.baseline_acc is not None])
    method = np.array([s.method_acc for s in task.seeds if s.method_acc is not None])
    return baseline / GAP, method / GAP


# ------------------------------------------------------------------ reference checks
def test_paired_target_matches_scipy_ttest_rel():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET], GapConfig())
    target = result.targets[0]
    baseline, method = pgr(GOOD)
    reference = stats.ttest_rel(method, baseline)
    ci = reference.confidence_interval(0.95)
    assert target.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert target.df == reference.df
    assert (target.ci95_low, target.ci95_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert target.delta == pytest.approx(np.mean(method - baseline), rel=1e-12)


def test_unpaired_target_matches_scipy_welch():
    rng = np.random.default_rng(0)
    baseline = rng.uniform(0.6, 0.65, 5)
    method = rng.uniform(0.62, 0.7, 7)
    seeds = [
        SeedResult(seed=i, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=b, method_acc=None)
        for i, b in enumerate(baseline.tolist())
    ] + [
        SeedResult(
            seed=100 + i, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=None, method_acc=m
        )
        for i, m in enumerate(method.tolist())
    ]
    unpaired = TaskSample(name="unpaired", seeds=seeds, paired=False)
    target = analyse_gap(LAB, [unpaired], GapConfig()).targets[0]
    reference = stats.ttest_ind(method / GAP, baseline / GAP, equal_var=False)
    ci = reference.confidence_interval(0.95)
    assert (target.n_baseline, target.n_method, target.paired) == (5, 7, False)
    assert target.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert target.df == pytest.approx(reference.df, rel=1e-9)
    assert (target.ci95_low, target.ci95_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    mann_whitney = stats.mannwhitneyu(method, baseline).statistic / (5 * 7)
    assert target.prob_improvement == pytest.approx(mann_whitney)


# ------------------------------------------------------------------ edge cases, no NaN
def test_fewer_than_two_seeds():
    single = task_with_effects("single", [0.4])
    result = analyse_gap(LAB, [single, GOOD], GapConfig())
    target = result.targets[0]
    assert target.verdict == "inconclusive" and "insufficient_seeds" in target.flags
    assert target.delta == pytest.approx(0.4) and target.se is None and target.p_holm is None
    assert target.rho_ci_kind == "undefined"
    empty = TaskSample(name="empty", seeds=[])
    assert "insufficient_seeds" in analyse_gap(LAB, [empty], GapConfig()).targets[0].flags
    assert_clean(result)


def test_zero_variance():
    constant = task_with_effects("constant", [0.25] * 5)
    result = analyse_gap(LAB, [constant], GapConfig())
    target = result.targets[0]
    assert target.verdict == "inconclusive" and "zero_variance" in target.flags
    assert target.ci95_low is None and target.seeds_needed is None
    assert_clean(result)
    flat_lab = analyse_gap(task_with_effects("lab", [0.5] * 4), [GOOD], GapConfig())
    assert "zero_variance" in flat_lab.lab.flags and not flat_lab.lab.positive
    assert_clean(flat_lab)


def test_degenerate_seed_gap_is_kept_and_reported():
    effects = [0.45, 0.50, 0.40, 0.47]
    baseline = [0.6, 0.61, 0.62, 0.63]
    method = [b + e * GAP for b, e in zip(baseline, effects, strict=True)]
    weak = [WEAK, WEAK, WEAK, 0.75]  # seed 3: ceiling 0.7 < weak 0.75
    task = paired_task("odd", baseline, method, weak=weak)
    target = analyse_gap(LAB, [task], GapConfig()).targets[0]
    assert "degenerate_seed_gap" in target.flags and target.n == 4
    assert target.denominator == pytest.approx((3 * GAP - 0.05) / 4)


def test_undefined_denominator():
    task = paired_task("broken", [0.6, 0.61, 0.62], [0.7, 0.7, 0.71], weak=0.8, ceiling=0.7)
    result = analyse_gap(LAB, [task, GOOD], GapConfig())
    target = result.targets[0]
    assert "undefined_denominator" in target.flags and target.delta is None
    assert target.verdict == "inconclusive" and result.targets[1].verdict == "replicated"
    assert result.overall_verdict == "inconclusive"
    assert_clean(result)


def test_unequal_seed_counts_in_a_paired_design():
    seeds = list(GOOD.seeds) + [
        SeedResult(seed=50, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=0.6, method_acc=None)
    ]
    lopsided = TaskSample(name="lopsided", seeds=seeds)
    target = analyse_gap(LAB, [lopsided], GapConfig()).targets[0]
    assert "unmatched_seeds_dropped" in target.flags and target.n == len(GOOD.seeds)
    assert target.verdict == "replicated"
    assert any("[50]" in r for r in target.reasons)


def test_unpaired_with_one_run_per_arm():
    seeds = [
        SeedResult(seed=1, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=0.6, method_acc=None),
        SeedResult(seed=2, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=None, method_acc=0.7),
    ]
    task = TaskSample(name="tiny", seeds=seeds, paired=False)
    result = analyse_gap(LAB, [task], GapConfig())
    assert "insufficient_seeds" in result.targets[0].flags
    assert result.targets[0].delta == pytest.approx(0.5)
    assert_clean(result)


# ------------------------------------------------------------------ the divisor's noise
def test_paired_se_counts_the_noise_of_the_mean_gap():
    """Delta-method SE of the ratio of means, written out: Var(d̄ − R·ḡ) / ḡ², with the gap's
    variance and its covariance with the effect; the point estimate is unchanged."""
    weak = [0.50, 0.52, 0.47, 0.51, 0.49]
    ceiling = [0.70, 0.69, 0.71, 0.66, 0.72]
    baseline = [0.60, 0.61, 0.58, 0.62, 0.60]
    method = [0.65, 0.68, 0.62, 0.69, 0.65]  # the gain is smaller where the gap is wider
    task = paired_task("noisy_gap", baseline, method, weak=weak, ceiling=ceiling)
    target = analyse_gap(LAB, [task], GapConfig()).targets[0]
    d, g = np.subtract(method, baseline), np.subtract(ceiling, weak)
    ratio = d.mean() / g.mean()
    cov = np.cov(d, g)
    variance = cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]
    assert target.delta == pytest.approx(ratio, rel=1e-12)
    assert target.denominator == pytest.approx(g.mean(), rel=1e-12)
    assert target.se == pytest.approx(math.sqrt(variance / 5) / g.mean(), rel=1e-12)
    assert target.df == 4
    assert target.se > 1.5 * np.std(d, ddof=1) / g.mean() / math.sqrt(5)  # the old SE


def test_zero_variance_is_the_same_share_of_the_gap_on_every_seed():
    """Identical per-seed effects now mean the same PGR on every seed (d_i = R·g_i): no
    variance to estimate. A constant accuracy gain over gaps that vary is not identical."""
    weak = [0.50, 0.52, 0.47, 0.51]
    ceiling = [0.70, 0.69, 0.71, 0.66]
    baseline = [0.60, 0.61, 0.58, 0.62]
    share = [b + 0.25 * (c - w) for b, c, w in zip(baseline, ceiling, weak, strict=True)]
    task = paired_task("share", baseline, share, weak=weak, ceiling=ceiling)
    target = analyse_gap(LAB, [task], GapConfig()).targets[0]
    assert "zero_variance" in target.flags and target.ci95_low is None
    assert target.delta == pytest.approx(0.25)
    constant = [b + 0.05 for b in baseline]
    task = paired_task("constant_gain", baseline, constant, weak=weak, ceiling=ceiling)
    target = analyse_gap(LAB, [task], GapConfig()).targets[0]
    assert "zero_variance" not in target.flags and target.se > 0


def test_paired_divisor_uses_the_paired_seeds():
    lone = SeedResult(seed=50, weak_acc=0.3, ceiling_acc=0.9, baseline_acc=0.6, method_acc=None)
    lopsided = TaskSample(name="lopsided", seeds=[*GOOD.seeds, lone])
    target = analyse_gap(LAB, [lopsided], GapConfig()).targets[0]
    assert target.denominator == pytest.approx(GAP)
    assert target.delta == pytest.approx(np.mean([0.45, 0.50, 0.40, 0.47, 0.43, 0.48]))
