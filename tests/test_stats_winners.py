"""Checks of labgap.stats.winners: the naive and hybrid figures of the leaderboard winner."""

import pytest
from scipy import stats
from test_stats_analysis import CANDIDATES, GOOD, LAB

from labgap.stats.analysis import analyse_gap
from labgap.stats.schemas import GapConfig


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
