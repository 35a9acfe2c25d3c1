"""Checks of labgap.stats.intervals: Welch summaries against scipy, and Fieller sets."""

import math

import numpy as np
import pytest
from scipy import stats

from labgap.stats.intervals import Effect, fieller_interval, fieller_pieces, welch_effect


def test_welch_effect_matches_scipy_on_arrays():
    rng = np.random.default_rng(1)
    baseline, method = rng.normal(0, 1, (4, 6)), rng.normal(1, 2, (4, 9))
    effect = welch_effect(baseline, method)
    for i in range(4):
        reference = stats.ttest_ind(method[i], baseline[i], equal_var=False)
        assert effect.delta[i] / effect.se[i] == pytest.approx(reference.statistic)
        assert effect.df[i] == pytest.approx(reference.df)


# ------------------------------------------------------------------ Fieller intervals
def welch_test_statistic_at(rho, a: Effect, b: Effect, level: float):
    """|a − ρb| − q(df(ρ))·se(ρ): ≤ 0 where the Welch test accepts ρ (the Fieller set), zero at
    the ends of its pieces. Written out from the definition, on arrays of studies."""
    var_a, var_b = a.se**2, (rho * b.se) ** 2
    df = (var_a + var_b) ** 2 / (var_a**2 / a.df + var_b**2 / b.df)
    q = stats.t.ppf(0.5 + level / 2, df)
    return np.abs(a.delta - rho * b.delta) - q * np.sqrt(var_a + var_b)


def fieller_covers(
    low, high, kind, value, numerator=None, denominator=None, level: float = 0.95
) -> np.ndarray:
    """Whether a Fieller set (as returned by `fieller_interval`) contains `value`. A union
    contains it when any piece does, which is where the Welch test accepts it: that needs the
    set's inputs; without them only the piece holding the point estimate is counted."""
    inside = (low <= value) & (value <= high)
    piece = np.where(low <= high, inside, (value >= low) | (value <= high))
    if numerator is not None:
        piece = welch_test_statistic_at(value, numerator, denominator, level) <= 0
    return np.select([kind == 1, kind == 2, kind == 3, kind == 4], [inside, ~inside, True, piece])


def one(delta, se, df) -> Effect:
    return Effect(np.array([delta], float), np.array([se], float), np.array([df], float))


def test_fieller_bounded_when_the_denominator_is_clearly_nonzero():
    a, b = one(0.5, 0.1, 5), one(1.0, 0.1, 9)
    low, high, kind = fieller_interval(a, b, 0.95)
    assert kind[0] == 1 and low[0] < 0.5 < high[0]
    for end in (low[0], high[0]):
        assert welch_test_statistic_at(end, a, b, 0.95) == pytest.approx(0, abs=1e-9)
    assert fieller_pieces(a, b, 0.95) == [(low[0], high[0])]


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
    assert fieller_pieces(a, b, 0.95) == [(-math.inf, low[0]), (high[0], math.inf)]
    # Both indistinguishable from 0: every ratio is compatible.
    a, b = one(0.05, 0.1, 9), one(0.05, 0.1, 9)
    low, high, kind = fieller_interval(a, b, 0.95)
    assert kind[0] == 3 and low[0] == -np.inf and high[0] == np.inf
    assert fieller_pieces(a, b, 0.95) == [(-math.inf, math.inf)]


def test_fieller_is_bounded_exactly_when_the_lab_interval_excludes_zero():
    rng = np.random.default_rng(2)
    b_delta = rng.uniform(0.0, 0.5, 500)
    numerator = Effect(rng.uniform(-1, 1, 500), np.full(500, 0.2), np.full(500, 4.0))
    denominator = Effect(b_delta, np.full(500, 0.1), np.full(500, 7.0))
    _, _, kind = fieller_interval(numerator, denominator, 0.95)
    lab_excludes_zero = b_delta - stats.t.ppf(0.975, 7) * 0.1 > 0
    assert np.array_equal(kind == 1, lab_excludes_zero)


def assert_pieces_are_the_acceptance_region(a: Effect, b: Effect, pieces) -> None:
    """Each finite end is a root of the Welch test; on 4001 angles across the whole line (ρ =
    tan θ), ρ lies in a piece exactly where the test accepts it and where `fieller_covers`
    says the set covers it (points at an end excepted)."""
    for end in (x for piece in pieces for x in piece if math.isfinite(x)):
        assert welch_test_statistic_at(end, a, b, 0.95)[0] == pytest.approx(0, abs=1e-9)
    rho = np.tan(np.linspace(-np.pi / 2, np.pi / 2, 4003)[1:-1])
    accepted = welch_test_statistic_at(rho, a, b, 0.95) <= 0
    covered = fieller_covers(*fieller_interval(a, b, 0.95), rho, a, b)
    in_piece = np.zeros(rho.shape, bool)
    near_end = np.zeros(rho.shape, bool)
    for low, high in pieces:
        in_piece |= (low <= rho) & (rho <= high)
        near_end |= np.isclose(rho, low, rtol=1e-9) | np.isclose(rho, high, rtol=1e-9)
    assert np.array_equal(accepted[~near_end], in_piece[~near_end])
    assert np.array_equal(covered[~near_end], in_piece[~near_end])


UNIONS = {
    # inputs found among 20,000 simulated studies (3 seeds each, seed 2024) with a positive lab
    # effect: the old bisection reported [−0.385, 40.6] as one interval, ends of two pieces
    "two bounded pieces": (one(0.609, 0.438, 2), one(2.505, 0.579, 2), 2),
    # from 200,000 broader studies (seed 2025): ρ̂ = −6.6 lies on the piece through ±∞
    "piece through infinity": (one(-1.914, 0.46, 2), one(0.288, 0.37, 2), 3),
}


@pytest.mark.parametrize("case", UNIONS)
def test_fieller_set_in_pieces(case):
    a, b, n_pieces = UNIONS[case]
    low, high, kind = fieller_interval(a, b, 0.95)
    pieces = fieller_pieces(a, b, 0.95)
    assert kind[0] == 4 and len(pieces) == n_pieces and pieces == sorted(pieces)
    assert_pieces_are_the_acceptance_region(a, b, pieces)
    rho_hat = a.delta[0] / b.delta[0]
    if low[0] <= high[0]:  # [low, high] is the piece holding ρ̂ ...
        assert (low[0], high[0]) in pieces and low[0] <= rho_hat <= high[0]
    else:  # ... or, through ±∞, [low, ∞) ∪ (−∞, high]
        assert {(low[0], math.inf), (-math.inf, high[0])} <= set(pieces)
        assert rho_hat >= low[0] or rho_hat <= high[0]
    gap = (pieces[0][1] + pieces[1][0]) / 2  # between two pieces: outside
    assert not fieller_covers(low, high, kind, gap, a, b)[0]
    assert fieller_covers(low, high, kind, rho_hat, a, b)[0]


def test_fieller_pieces_agree_with_the_interval_and_the_test():
    """On studies of every kind, `fieller_pieces` holds the set `fieller_interval` describes,
    and both are the acceptance region of the Welch test."""
    rng = np.random.default_rng(3)
    numerator = Effect(rng.normal(0, 1, 300), np.exp(rng.uniform(-2, 0.5, 300)), np.full(300, 2.0))
    denominator = Effect(
        rng.normal(0.5, 1, 300), np.exp(rng.uniform(-2, 0.5, 300)), np.full(300, 4.0)
    )
    lows, highs, kinds = fieller_interval(numerator, denominator, 0.95)
    assert set(np.unique(kinds)) == {1, 2, 3, 4}
    for i, (low, high, kind) in enumerate(zip(lows, highs, kinds, strict=True)):
        a, b = (Effect(*(x[i : i + 1] for x in effect)) for effect in (numerator, denominator))
        pieces = fieller_pieces(a, b, 0.95)
        expected = {
            1: [(low, high)],
            2: [(-math.inf, low), (high, math.inf)],
            3: [(-math.inf, math.inf)],
        }
        if kind in expected:
            assert pieces == expected[kind]
        else:
            assert len(pieces) >= 2
        assert_pieces_are_the_acceptance_region(a, b, pieces)


def test_fieller_undefined_without_a_usable_effect():
    low, high, kind = fieller_interval(one(0.5, 0.0, 4), one(1.0, 0.1, 4), 0.95)
    assert kind[0] == 0 and np.isnan(low[0]) and np.isnan(high[0])
    assert fieller_pieces(one(0.5, 0.1, 4), one(1.0, np.nan, np.nan), 0.95) == []
