"""Checks of labgap.stats.analysis, the per-study analysis, and of its input validation.

The sample tasks and helpers defined here are shared by the other test_stats_* modules.
"""

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats
from statsmodels.stats.multitest import multipletests

from labgap.stats.analysis import analyse_gap
from labgap.stats.known import effect_estimate
from labgap.stats.power import seeds_needed
from labgap.stats.schemas import Candidate, GapConfig, SeedResult, TaskSample

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


def assert_clean(result) -> None:
    """Every float is finite or None: the result serialises to strict JSON."""
    json.loads(result.model_dump_json(), parse_constant=lambda c: pytest.fail(f"got {c}"))


CANDIDATES = [
    Candidate(name="a", mean=0.62, se=0.05, n=5),
    Candidate(name="b", mean=0.60, se=0.05, n=5),
    Candidate(name="c", mean=0.40, se=0.05, n=5),
]


# ------------------------------------------------------------------ one study
def test_holm_matches_statsmodels():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET, NOISY], GapConfig(alpha=0.05))
    raw = [t.p_value for t in result.targets]
    expected = multipletests(raw, alpha=0.05, method="holm")[1]
    assert [t.p_holm for t in result.targets] == pytest.approx(list(expected))


def test_result_reports_rho_kind_not_nan():
    unclear_lab = task_with_effects("lab", [0.3, -0.2, 0.1, 0.0])
    result = analyse_gap(unclear_lab, [GOOD], GapConfig())
    target = result.targets[0]
    assert target.rho_ci_kind in {"complement", "unbounded"}
    text = result.model_dump_json()
    assert "NaN" not in text and "Infinity" not in text


def test_heterogeneous_flag_when_targets_disagree():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET], GapConfig())
    assert [t.verdict for t in result.targets] == ["replicated", "failed_to_replicate"]
    assert "heterogeneous" in result.overall_flags


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


@pytest.mark.parametrize(
    "task",
    [
        LAB,
        NOISY,
        task_with_effects("single", [0.4]),
        paired_task("broken", [0.6, 0.61, 0.62], [0.7, 0.7, 0.71], weak=0.8, ceiling=0.7),
    ],
    ids=lambda task: task.name,
)
def test_effect_estimate_is_the_lab_delta_analyse_gap_reports(task):
    assert effect_estimate(task) == analyse_gap(task, [GOOD], GapConfig()).lab.delta


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
