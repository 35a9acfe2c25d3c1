"""Checks of labgap.stats.sequential: the planned looks and the spending boundaries."""

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import special

from labgap.stats.sequential import Schedule, look_level, nominal_levels, spent, z_boundaries


def test_looks_run_from_start_in_batches_to_the_cap():
    assert Schedule(start=6, batch=4, cap=18).sizes == [6, 10, 14, 18]
    assert Schedule(start=4, batch=4, cap=14).sizes == [4, 8, 12, 14]
    assert Schedule(start=5, batch=3, cap=5).sizes == [5]
    schedule = Schedule(start=6, batch=4, cap=18)
    assert [schedule.look_of(n) for n in (3, 6, 7, 10, 18, 30)] == [1, 1, 2, 2, 4, 4]


def test_a_cap_below_the_first_look_is_refused():
    with pytest.raises(ValidationError, match="cap"):
        Schedule(start=8, batch=2, cap=6)


def test_spending_is_alpha_at_the_end_and_increasing():
    fractions = np.linspace(0.0, 1.0, 11)
    cumulative = spent(fractions, 0.05)
    assert cumulative[0] == 0.0 and cumulative[-1] == pytest.approx(0.05)
    assert np.all(np.diff(cumulative) > 0)


@pytest.mark.parametrize("sizes", [(4, 8, 12, 16), (6, 10, 14, 18), (3, 5, 20)])
def test_boundaries_spend_what_they_promise(sizes):
    """Monte Carlo of the normal score process: the chance of crossing the two-sided boundaries
    first at look k is the spending function's increment (within 4 MC SEs)."""
    fractions = tuple(n / sizes[-1] for n in sizes)
    bounds = np.array(z_boundaries(fractions, 0.05))
    rng = np.random.default_rng(list(sizes))
    walks = rng.standard_normal((400_000, sizes[-1])).cumsum(axis=1)
    z = np.stack([walks[:, n - 1] / np.sqrt(n) for n in sizes], axis=1)
    crossed = np.abs(z) >= bounds
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1), -1)
    increments = np.diff(spent(np.array((0.0, *fractions)), 0.05))
    for k, increment in enumerate(increments):
        rate = float(np.mean(first == k))
        assert abs(rate - increment) < 4 * np.sqrt(increment / 400_000), (k, rate, increment)


def test_one_look_is_the_fixed_interval():
    assert nominal_levels(Schedule(start=6, batch=1, cap=6), 0.05) == pytest.approx((0.95,))
    assert look_level("fixed", None, 0.05, 1) == pytest.approx(0.95)
    assert float(special.ndtri(0.975)) == pytest.approx(z_boundaries((1.0,), 0.05)[0])


def test_later_looks_are_wider_than_a_fixed_interval_but_not_absurdly():
    levels = nominal_levels(Schedule(start=6, batch=4, cap=18), 0.05)
    assert all(0.975 < level < 0.99 for level in levels)
    assert look_level("sequential", Schedule(start=6, batch=4, cap=18), 0.05, 9) == levels[-1]
