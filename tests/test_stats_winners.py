"""Checks of labgap.stats.winners: the naive and hybrid figures of the leaderboard winner."""

import warnings

import numpy as np
import pytest
from scipy import stats
from test_stats_analysis import CANDIDATES, GOOD, LAB

from labgap.stats.analysis import analyse_gap
from labgap.stats.schemas import Candidate, GapConfig, SearchBaseline
from labgap.stats.winners import corrected_winner

BASELINE = SearchBaseline(n=5, se=0.05)


def test_naive_and_hybrid_estimates_of_the_winner():
    lab = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES, baseline=BASELINE).lab
    assert lab.selected == "a" and lab.naive_estimate == 0.62
    assert lab.naive_flag == "upward-biased (selected)" and "naive_upward_biased" in lab.flags
    half = stats.t.ppf(0.975, 4) * 0.05
    assert (lab.naive_ci_low, lab.naive_ci_high) == pytest.approx((0.62 - half, 0.62 + half))
    assert lab.hybrid_estimate < lab.naive_estimate  # a close win is discounted
    assert lab.hybrid_ci_low < lab.hybrid_estimate < lab.hybrid_ci_high
    assert any("top of 3 candidates" in r and "(16 df)" in r for r in lab.reasons)


def test_hybrid_skipped_with_a_reason():
    lab = analyse_gap(
        LAB, [GOOD], GapConfig(), candidates=CANDIDATES, selected="b", baseline=BASELINE
    ).lab
    assert lab.naive_estimate == 0.60 and lab.hybrid_estimate is None
    assert any("not the top mean" in r for r in lab.reasons)
    alone = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES[:1]).lab
    assert alone.hybrid_estimate is None and any("one candidate" in r for r in alone.reasons)


def test_hybrid_not_shown_without_the_baselines_spread():
    """Each effect subtracts the baseline's mean: without its seeds the SE is unknown; with one
    seed everywhere there is no seed-to-seed variance to pool."""
    unknown = analyse_gap(LAB, [GOOD], GapConfig(), candidates=CANDIDATES).lab
    assert unknown.hybrid_estimate is None
    assert any("baseline's search seeds are unknown" in r for r in unknown.reasons)
    single = [Candidate(name=c.name, mean=c.mean, se=0.0, n=1) for c in CANDIDATES]
    one_seed = analyse_gap(
        LAB, [GOOD], GapConfig(), candidates=single, baseline=SearchBaseline(n=1)
    ).lab
    assert one_seed.hybrid_estimate is None
    assert any("one search seed" in r for r in one_seed.reasons)


def test_search_baseline_needs_its_se_with_two_seeds():
    with pytest.raises(ValueError, match="se"):
        SearchBaseline(n=2)


def test_a_tie_at_the_top_gives_finite_figures_without_warnings():
    """Two methods with the same mean: the winner sits at its truncation point, where the
    conditional CDF is 0/0 at one end of the projection set; the figures stay finite and the
    interval holds the estimate."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        estimate, low, high = corrected_winner(
            np.array(0.5), np.array(0.5), np.array(0.01), 2, 2, 5, df=8.0
        )
    assert np.isfinite([estimate, low, high]).all() and low <= estimate <= high
