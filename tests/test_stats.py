"""Unit and reference checks for labgap.stats (the calibration suite is test_stats_calibration)."""

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from labgap.stats import (
    FAILED,
    INCONCLUSIVE,
    REPLICATED,
    Candidate,
    Effect,
    GapConfig,
    SeedResult,
    TaskSample,
    analyse_gap,
    decide,
    fieller_covers,
    fieller_interval,
    seeds_needed,
    welch_effect,
)

WEAK, CEILING = 0.5, 0.7  # denominator 0.2 on every seed
GAP = CEILING - WEAK


def paired_task(name: str, baseline, method, weak=WEAK, ceiling=CEILING) -> TaskSample:
    """A paired task from per-seed accuracies (weak and ceiling may be scalars or lists)."""
    n = len(baseline)
    weak = weak if isinstance(weak, list) else [weak] * n
    ceiling = ceiling if isinstance(ceiling, list) else [ceiling] * n
    seeds = [
        SeedResult(seed=i, weak_acc=w, ceiling_acc=c, baseline_acc=b, method_acc=m)
        for i, (w, c, b, m) in enumerate(zip(weak, ceiling, baseline, method, strict=True))
    ]
    return TaskSample(name=name, seeds=seeds)


def task_with_effects(name: str, effects, base: float = 0.6) -> TaskSample:
    """Paired task whose per-seed PGR effects are `effects` (accuracy gain = effect × gap)."""
    baseline = [base + 0.001 * i for i in range(len(effects))]
    method = [b + e * GAP for b, e in zip(baseline, effects, strict=True)]
    return paired_task(name, baseline, method)


LAB = task_with_effects("lab", [0.50, 0.55, 0.45, 0.52, 0.48, 0.51, 0.49, 0.50])
GOOD = task_with_effects("good", [0.45, 0.50, 0.40, 0.47, 0.43, 0.48])
WEAK_TARGET = task_with_effects("weak", [0.02, -0.01, 0.03, 0.00, 0.01, 0.02])
NOISY = task_with_effects("noisy", [0.6, -0.4, 0.3])


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


def test_adjusted_interval_uses_t_ppf_at_alpha_over_j():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET, NOISY], GapConfig(alpha=0.05))
    assert result.level == pytest.approx(1 - 0.05 / 3)
    for target in result.targets:
        half = stats.t.ppf(1 - 0.05 / 6, target.df) * target.se
        assert target.ci_adj_low == pytest.approx(target.delta - half, rel=1e-9)
        assert target.ci_adj_high == pytest.approx(target.delta + half, rel=1e-9)
    lab_half = stats.t.ppf(1 - 0.05 / 6, result.lab.df) * result.lab.se
    assert result.lab.ci_adj_low == pytest.approx(result.lab.delta - lab_half, rel=1e-9)


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


def test_holm_matches_statsmodels():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET, NOISY], GapConfig(alpha=0.05))
    raw = [t.p_value for t in result.targets]
    expected = multipletests(raw, alpha=0.05, method="holm")[1]
    assert [t.p_holm for t in result.targets] == pytest.approx(list(expected))


@pytest.mark.parametrize(
    ("effect", "alpha", "sides"), [(0.5, 0.05, 1), (1.0, 0.025, 2), (2, 0.01, 2)]
)
def test_seeds_needed_matches_statsmodels_power(effect, alpha, sides):
    n = seeds_needed(effect, 1.0, alpha, power=0.8, sides=sides)
    solved = TTestPower().solve_power(
        effect_size=effect, alpha=alpha / sides, power=0.8, alternative="larger"
    )
    assert n == math.ceil(solved)
    assert TTestPower().power(effect, n - 1, alpha / sides, alternative="larger") < 0.8


def test_welch_effect_matches_scipy_on_arrays():
    rng = np.random.default_rng(1)
    baseline, method = rng.normal(0, 1, (4, 6)), rng.normal(1, 2, (4, 9))
    effect = welch_effect(baseline, method)
    for i in range(4):
        reference = stats.ttest_ind(method[i], baseline[i], equal_var=False)
        assert effect.delta[i] / effect.se[i] == pytest.approx(reference.statistic)
        assert effect.df[i] == pytest.approx(reference.df)


# ------------------------------------------------------------------ Fieller intervals
def one(delta, se, df) -> Effect:
    return Effect(np.array([delta], float), np.array([se], float), np.array([df], float))


def welch_test_statistic_at(rho, a: Effect, b: Effect, level: float):
    """|a − ρb| − q(df(ρ))·se(ρ), zero at the ends of the Fieller set."""
    var_a, var_b = a.se[0] ** 2, (rho * b.se[0]) ** 2
    df = (var_a + var_b) ** 2 / (var_a**2 / a.df[0] + var_b**2 / b.df[0])
    q = stats.t.ppf(0.5 + level / 2, df)
    return abs(a.delta[0] - rho * b.delta[0]) - q * math.sqrt(var_a + var_b)


def test_fieller_bounded_when_the_denominator_is_clearly_nonzero():
    a, b = one(0.5, 0.1, 5), one(1.0, 0.1, 9)
    low, high, kind = fieller_interval(a, b, 0.95)
    assert kind[0] == 1 and low[0] < 0.5 < high[0]
    for end in (low[0], high[0]):
        assert welch_test_statistic_at(end, a, b, 0.95) == pytest.approx(0, abs=1e-9)


def test_fieller_complement_and_whole_line():
    # Denominator's own interval includes 0, numerator clearly non-zero: complement.
    a, b = one(1.0, 0.1, 9), one(0.2, 0.2, 9)
    low, high, kind = fieller_interval(a, b, 0.95)
    assert kind[0] == 2 and low[0] < high[0]
    assert fieller_covers(low, high, kind, 1e6)[0] and fieller_covers(low, high, kind, -1e6)[0]
    assert not fieller_covers(low, high, kind, (low[0] + high[0]) / 2)[0]
    assert fieller_covers(low, high, kind, 1.0 / 0.2)[0]  # the point estimate
    for end in (low[0], high[0]):
        assert welch_test_statistic_at(end, a, b, 0.95) == pytest.approx(0, abs=1e-9)
    # Both indistinguishable from 0: every ratio is compatible.
    low, high, kind = fieller_interval(one(0.05, 0.1, 9), one(0.05, 0.1, 9), 0.95)
    assert kind[0] == 3 and low[0] == -np.inf and high[0] == np.inf


def test_fieller_is_bounded_exactly_when_the_lab_interval_excludes_zero():
    rng = np.random.default_rng(2)
    b_delta = rng.uniform(0.0, 0.5, 500)
    numerator = Effect(rng.uniform(-1, 1, 500), np.full(500, 0.2), np.full(500, 4.0))
    denominator = Effect(b_delta, np.full(500, 0.1), np.full(500, 7.0))
    _, _, kind = fieller_interval(numerator, denominator, 0.95)
    lab_excludes_zero = b_delta - stats.t.ppf(0.975, 7) * 0.1 > 0
    assert np.array_equal(kind == 1, lab_excludes_zero)


def test_result_reports_rho_kind_not_nan():
    unclear_lab = task_with_effects("lab", [0.3, -0.2, 0.1, 0.0])
    result = analyse_gap(unclear_lab, [GOOD], GapConfig())
    target = result.targets[0]
    assert target.rho_ci_kind in {"complement", "unbounded"}
    text = result.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text


# ------------------------------------------------------------------ verdict rule
def arrays(lab, targets):
    lab_effect = Effect(*(np.array([x], float) for x in lab))
    target_effect = Effect(*(np.array([[t[i] for t in targets]], float) for i in range(3)))
    return lab_effect, target_effect


def test_verdicts_on_constructed_effects():
    lab, targets = arrays(
        (1.0, 0.05, 9),
        [(0.9, 0.05, 9), (0.2, 0.05, 9), (0.45, 0.3, 9), (-0.5, 0.05, 9)],
    )
    decisions = decide(lab, targets, alpha=0.05, rho_min=0.5)
    assert decisions.verdict[0].tolist() == [REPLICATED, FAILED, INCONCLUSIVE, FAILED]
    assert decisions.overall[0] == REPLICATED
    decisions = decide(*arrays((1.0, 0.05, 9), [(0.2, 0.05, 9)]), alpha=0.05, rho_min=0.5)
    assert decisions.overall[0] == FAILED


def test_rho_min_zero_turns_failure_into_a_negative_effect():
    lab, targets = arrays((1.0, 0.05, 9), [(0.2, 0.05, 9), (-0.3, 0.05, 9)])
    decisions = decide(lab, targets, alpha=0.05, rho_min=0.0)
    assert decisions.verdict[0].tolist() == [REPLICATED, FAILED]


def test_absolute_floor():
    lab, targets = arrays((1.0, 0.05, 9), [(0.62, 0.02, 9), (0.3, 0.02, 9), (0.9, 0.02, 9)])
    decisions = decide(lab, targets, alpha=0.05, rho_min=0.5, absolute_floor=0.7)
    assert decisions.verdict[0].tolist() == [FAILED, FAILED, REPLICATED]
    assert decisions.below_floor[0].tolist() == [True, True, False]
    assert decisions.failed_margin[0].tolist() == [False, True, False]


def test_failed_but_nonzero_flag_and_reasons():
    result = analyse_gap(LAB, [WEAK_TARGET, GOOD], GapConfig())
    weak, good = result.targets
    assert weak.verdict == "failed_to_replicate" and weak.margin_upper < 0
    assert good.verdict == "replicated" and good.ci_adj_low > 0
    assert result.overall_verdict == "replicated"
    small_but_real = task_with_effects("small", [0.10, 0.12, 0.11, 0.09, 0.10, 0.11])
    target = analyse_gap(LAB, [small_but_real], GapConfig()).targets[0]
    assert target.verdict == "failed_to_replicate"
    assert "nonzero" in target.flags and target.ci_adj_low > 0


def test_heterogeneous_flag_when_targets_disagree():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET], GapConfig())
    assert [t.verdict for t in result.targets] == ["replicated", "failed_to_replicate"]
    assert "heterogeneous" in result.overall_flags


def test_inconclusive_target_gets_a_seed_count_that_would_decide():
    target = analyse_gap(LAB, [NOISY], GapConfig()).targets[0]
    assert target.verdict == "inconclusive"
    assert isinstance(target.seeds_needed, int) and target.seeds_needed > 3
    assert any("seeds would give 80% power" in r for r in target.reasons)


def test_no_lab_effect_means_nothing_is_judged():
    no_lab = task_with_effects("lab", [0.1, -0.1, 0.05, 0.0, -0.02])
    result = analyse_gap(no_lab, [GOOD, WEAK_TARGET], GapConfig())
    assert not result.lab.positive and "no_lab_effect" in result.lab.flags
    assert all(t.verdict == "inconclusive" for t in result.targets)
    assert all("no_lab_effect" in t.flags for t in result.targets)
    assert result.overall_verdict == "inconclusive" and "no_lab_effect" in result.overall_flags
    assert any("no lab effect to transfer" in r for r in result.lab.reasons)


def test_side_figures():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET], GapConfig())
    good, weak = result.targets
    assert good.log10_bayes_factor > 0 > weak.log10_bayes_factor
    assert good.prediction_low < result.lab.delta < good.prediction_high
    var = good.se**2 + result.lab.se**2
    df = var**2 / (good.se**4 / good.df + result.lab.se**4 / result.lab.df)
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    assert good.prediction_high - good.prediction_low == pytest.approx(2 * half)
    assert good.prob_improvement == 1.0
    assert weak.prob_improvement == pytest.approx((4 + 0.5) / 6)  # one tie counts half


# ------------------------------------------------------------------ edge cases, no NaN
def assert_clean(result) -> None:
    """Every float is finite or None: the result serialises to strict JSON."""
    json.loads(result.model_dump_json(), parse_constant=lambda c: pytest.fail(f"got {c}"))


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
    assert target.verdict == "inconclusive" and result.overall_verdict == "replicated"
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


# ------------------------------------------------------------------ leaderboard figures
CANDIDATES = [
    Candidate(name="a", mean=0.62, se=0.05, n=5),
    Candidate(name="b", mean=0.60, se=0.05, n=5),
    Candidate(name="c", mean=0.40, se=0.05, n=5),
]


def test_naive_and_hybrid_estimates_of_the_winner():
    lab = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES).lab
    assert lab.selected == "a" and lab.naive_estimate == 0.62
    assert lab.naive_flag == "upward-biased (selected)" and "naive_upward_biased" in lab.flags
    half = stats.t.ppf(0.975, 4) * 0.05
    assert (lab.naive_ci_low, lab.naive_ci_high) == pytest.approx((0.62 - half, 0.62 + half))
    assert lab.hybrid_estimate < lab.naive_estimate  # a close win is discounted
    assert lab.hybrid_ci_low < lab.hybrid_estimate < lab.hybrid_ci_high


def test_hybrid_skipped_with_a_reason():
    lab = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES, selected="b").lab
    assert lab.naive_estimate == 0.60 and lab.hybrid_estimate is None
    assert any("not the top mean" in r for r in lab.reasons)
    alone = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES[:1]).lab
    assert alone.hybrid_estimate is None and any("one candidate" in r for r in alone.reasons)


# ------------------------------------------------------------------ validation at the boundary
def field_of(error: ValidationError) -> str:
    return " ".join(str(part) for e in error.errors() for part in e["loc"]) + str(error)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda: SeedResult(
                seed=0, weak_acc=0.5, ceiling_acc=0.7, baseline_acc=1.2, method_acc=0.5
            ),
            "baseline_acc",
        ),
        (
            lambda: SeedResult(
                seed=0, weak_acc=math.nan, ceiling_acc=0.7, baseline_acc=0.5, method_acc=0.5
            ),
            "weak_acc",
        ),
        (
            lambda: SeedResult(
                seed="x", weak_acc=0.5, ceiling_acc=0.7, baseline_acc=0.5, method_acc=0.5
            ),
            "seed",
        ),
        (lambda: TaskSample(name="t", seeds=[LAB.seeds[0], LAB.seeds[0]]), "seeds"),
        (lambda: TaskSample(name="", seeds=[]), "name"),
        (lambda: GapConfig(alpha=0.6), "alpha"),
        (lambda: GapConfig(rho_min=1.5), "rho_min"),
        (lambda: GapConfig(absolute_floor=-0.1), "absolute_floor"),
        (lambda: Candidate(name="a", mean=0.5, se=-1, n=5), "se"),
        (lambda: analyse_gap(LAB, [], GapConfig()), "targets"),
        (lambda: analyse_gap(LAB, [GOOD, GOOD], GapConfig()), "targets"),
        (lambda: analyse_gap(LAB, [GOOD], GapConfig(), CANDIDATES, "zzz"), "selected"),
        (lambda: analyse_gap(LAB, [GOOD], "not a config"), "config"),
        (lambda: seeds_needed(-1.0, 1.0, 0.05), "effect"),
        (lambda: seeds_needed(1.0, 1.0, 0.05, sides=3), "sides"),
    ],
)
def test_invalid_input_raises_validation_error_naming_the_field(build, field):
    with pytest.raises(ValidationError) as caught:
        build()
    assert field in field_of(caught.value)


def test_results_are_plain_floats():
    result = analyse_gap(LAB, [GOOD, NOISY], GapConfig(), candidates=CANDIDATES)
    for model in [result.lab, *result.targets]:
        for value in model.model_dump().values():
            assert not isinstance(value, np.generic)
    assert_clean(result)
