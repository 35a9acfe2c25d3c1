"""Checks of labgap.stats.power: seed counts against statsmodels, and in a study."""

import math

import pytest
from statsmodels.stats.power import TTestPower
from test_stats_analysis import LAB, NOISY

from labgap.stats.analysis import analyse_gap
from labgap.stats.power import seeds_needed
from labgap.stats.schemas import GapConfig


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


def test_inconclusive_target_gets_a_seed_count_that_would_decide():
    target = analyse_gap(LAB, [NOISY], GapConfig()).targets[0]
    assert target.verdict == "inconclusive"
    assert isinstance(target.seeds_needed, int) and target.seeds_needed > 3
    assert any("seeds would give 80% power" in r for r in target.reasons)
