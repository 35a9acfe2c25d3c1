"""Checks of labgap.stats.intervals: Welch summaries against scipy, and Fieller sets."""

import math

import numpy as np
import pytest
from scipy import stats

from labgap.stats.intervals import Effect, fieller_interval, welch_effect


def test_welch_effect_matches_scipy_on_arrays():
    rng = np.random.default_rng(1)
    baseline, method = rng.normal(0, 1, (4, 6)), rng.normal(1, 2, (4, 9))
    effect = welch_effect(baseline, method)
    for i in range(4):
        reference = stats.ttest_ind(method[i], baseline[i], equal_var=False)
        assert effect.delta[i] / effect.se[i] == pytest.approx(reference.statistic)
        assert effect.df[i] == pytest.approx(reference.df)


# ------------------------------------------------------------------ Fieller intervals
def fieller_covers(low: np.ndarray, high: np.ndarray, kind: np.ndarray, value) -> np.ndarray:
    """Whether a Fieller set (as returned by `fieller_interval`) contains `value`."""
    inside = (low <= value) & (value <= high)
    return np.select([kind == 1, kind == 2, kind == 3], [inside, ~inside, True], False)


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
