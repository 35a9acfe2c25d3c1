"""Checks of labgap.stats.decision: the verdict rule on constructed effects and in a study."""

import numpy as np
import pytest
from scipy import stats
from test_stats_analysis import GOOD, LAB, NOISY, WEAK_TARGET, task_with_effects

from labgap.stats.analysis import analyse_gap
from labgap.stats.decision import decide, family_verdict
from labgap.stats.intervals import Effect
from labgap.stats.schemas import FAILED, INCONCLUSIVE, REPLICATED, GapConfig


def decide_fixed(lab, targets, alpha, **kwargs):
    """The fixed design's rule with one family: lab at 1 − α, targets at 1 − α/J."""
    n_targets = targets.delta.shape[-1]
    return decide(lab, targets, lab_level=1 - alpha, levels=1 - alpha / n_targets, **kwargs)


def arrays(lab, targets):
    lab_effect = Effect(*(np.array([x], float) for x in lab))
    target_effect = Effect(*(np.array([[t[i] for t in targets]], float) for i in range(3)))
    return lab_effect, target_effect


def test_verdicts_on_constructed_effects():
    lab, targets = arrays(
        (1.0, 0.05, 9),
        [(0.9, 0.05, 9), (0.2, 0.05, 9), (0.45, 0.3, 9), (-0.5, 0.05, 9)],
    )
    decisions = decide_fixed(lab, targets, alpha=0.05, rho_min=0.5)
    assert decisions.verdict[0].tolist() == [REPLICATED, FAILED, INCONCLUSIVE, FAILED]
    assert family_verdict(decisions.verdict)[0] == FAILED
    decisions = decide_fixed(*arrays((1.0, 0.05, 9), [(0.9, 0.05, 9)]), alpha=0.05, rho_min=0.5)
    assert family_verdict(decisions.verdict)[0] == REPLICATED


def test_a_family_replicates_only_when_every_target_does():
    verdicts = np.array(
        [
            [REPLICATED, REPLICATED],
            [REPLICATED, INCONCLUSIVE],
            [REPLICATED, FAILED],
            [INCONCLUSIVE, INCONCLUSIVE],
        ]
    )
    assert family_verdict(verdicts).tolist() == [REPLICATED, INCONCLUSIVE, FAILED, INCONCLUSIVE]


def test_rho_min_zero_turns_failure_into_a_negative_effect():
    lab, targets = arrays((1.0, 0.05, 9), [(0.2, 0.05, 9), (-0.3, 0.05, 9)])
    decisions = decide_fixed(lab, targets, alpha=0.05, rho_min=0.0)
    assert decisions.verdict[0].tolist() == [REPLICATED, FAILED]


def test_absolute_floor():
    lab, targets = arrays((1.0, 0.05, 9), [(0.62, 0.02, 9), (0.3, 0.02, 9), (0.9, 0.02, 9)])
    decisions = decide_fixed(lab, targets, alpha=0.05, rho_min=0.5, absolute_floor=0.7)
    assert decisions.verdict[0].tolist() == [FAILED, FAILED, REPLICATED]
    assert decisions.below_floor[0].tolist() == [True, True, False]
    assert decisions.failed_margin[0].tolist() == [False, True, False]


def test_adjusted_interval_uses_t_ppf_at_alpha_over_j():
    result = analyse_gap(LAB, [GOOD, WEAK_TARGET, NOISY], GapConfig(alpha=0.05))
    for target in result.targets:
        assert target.level == pytest.approx(1 - 0.05 / 3)
        half = stats.t.ppf(1 - 0.05 / 6, target.df) * target.se
        assert target.ci_adj_low == pytest.approx(target.delta - half, rel=1e-9)
        assert target.ci_adj_high == pytest.approx(target.delta + half, rel=1e-9)
    lab_half = stats.t.ppf(1 - 0.05 / 2, result.lab.df) * result.lab.se
    assert result.lab.ci_adj_low == pytest.approx(result.lab.delta - lab_half, rel=1e-9)


def test_failed_but_nonzero_flag_and_reasons():
    result = analyse_gap(LAB, [WEAK_TARGET, GOOD], GapConfig())
    weak, good = result.targets
    assert weak.verdict == "failed_to_replicate" and weak.margin_upper < 0
    assert good.verdict == "replicated" and good.ci_adj_low > 0
    assert result.overall_verdict == "failed_to_replicate"
    assert "heterogeneous" in result.headline("production").flags
    small_but_real = task_with_effects("small", [0.10, 0.12, 0.11, 0.09, 0.10, 0.11])
    target = analyse_gap(LAB, [small_but_real], GapConfig()).targets[0]
    assert target.verdict == "failed_to_replicate"
    assert "nonzero" in target.flags and target.ci_adj_low > 0


def test_no_lab_effect_means_nothing_is_judged():
    no_lab = task_with_effects("lab", [0.1, -0.1, 0.05, 0.0, -0.02])
    result = analyse_gap(no_lab, [GOOD, WEAK_TARGET], GapConfig())
    assert not result.lab.positive and "no_lab_effect" in result.lab.flags
    assert all(t.verdict == "inconclusive" for t in result.targets)
    assert all("no_lab_effect" in t.flags for t in result.targets)
    assert result.overall_verdict == "inconclusive" and "no_lab_effect" in result.overall_flags
    assert any("no lab effect to transfer" in r for r in result.lab.reasons)
