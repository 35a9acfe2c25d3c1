"""Power of the verdict rule's tests and the seed counts that reach a given power.

Used to tell an inconclusive study how many seeds would decide it, and by the calibration suite
to predict the rates it simulates.
"""

import math
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from scipy import stats

from labgap.stats.intervals import Effect, cochran_cox_quantile, is_usable, welch_df
from labgap.stats.samples import TaskData
from labgap.stats.schemas import MAX_SEEDS, GapConfig, Probability


def _smallest_n(power_at, target_power: float) -> int | None:
    """Smallest n ≥ 2 with power_at(n) ≥ target_power (power rises with n), else None."""
    if power_at(MAX_SEEDS) < target_power:
        return None
    low, high = 1, 2
    while power_at(high) < target_power:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if power_at(mid) >= target_power else (mid, high)
    return high


def decision_power(
    effect: float, sd: float, n: int, tail: float, fixed_var: float = 0.0, fixed_df: float = 1.0
) -> float:
    """Power of a one-sided test at `tail` when the estimate has variance sd²/n + fixed_var and
    the truth is `effect` beyond the threshold. The fixed term is the lab's share of a margin,
    which more target seeds cannot shrink (fixed_df is its df, unused when it is 0). Without it
    this is the exact non-central t power; with it, the Cochran–Cox critical value of
    `margin_bound` and a Welch–Satterthwaite df for the non-central t."""
    var_n = sd**2 / n
    df = welch_df(var_n, n - 1.0, fixed_var, fixed_df) if fixed_var else n - 1.0
    critical = cochran_cox_quantile(var_n, n - 1.0, fixed_var, fixed_df, tail)
    return float(stats.nct.sf(critical, df, effect / math.sqrt(var_n + fixed_var)))


def seeds_for_test(
    effect: float,
    sd: float,
    tail: float,
    power: float,
    fixed_var: float = 0.0,
    fixed_df: float = 1.0,
) -> int | None:
    """Smallest seed count with `decision_power` ≥ power, or None if none up to MAX_SEEDS."""
    return _smallest_n(lambda n: decision_power(effect, sd, n, tail, fixed_var, fixed_df), power)


class _PowerQuestion(BaseModel):
    """Arguments of `seeds_needed`, validated by name (validate_call names positions)."""

    effect: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    sd: Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
    alpha: Probability
    power: Probability
    sides: Literal[1, 2]


def seeds_needed(effect: float, sd: float, alpha: float, power: float = 0.8, sides: int = 1) -> int:
    """Smallest number of paired seeds for which a t test at level alpha (split over `sides`
    tails) detects a true per-seed mean `effect` with SD `sd` with probability `power`.

    Exact under normal noise (non-central t). The verdict rule decides with two-sided intervals
    at 1 − α/J, so for `replicated` use alpha=α/J, sides=2.
    """
    q = _PowerQuestion(effect=effect, sd=sd, alpha=alpha, power=power, sides=sides)
    n = seeds_for_test(q.effect, q.sd, q.alpha / q.sides, q.power)
    if n is None:
        raise ValueError(f"more than {MAX_SEEDS} seeds needed for effect/sd = {effect / sd:.3g}")
    return n


def seeds_to_decide(
    data: TaskData, lab: Effect, config: GapConfig, level: float
) -> tuple[int | None, str]:
    """Target seeds that would give `config.power` to reach a verdict, taking the observed
    effects as the truth (a planning guide, not a promise); the smallest over the verdicts the
    estimates point to."""
    if not data.sd or not is_usable(data.effect):
        return None, "no seed count can be computed without a per-seed SD"
    tail = (1.0 - level) / 2.0
    delta, floor = float(data.effect.delta), config.absolute_floor or 0.0
    margin = delta - config.rho_min * float(lab.delta)
    lab_var = float(config.rho_min * lab.se) ** 2
    counts = []
    if delta > floor:
        counts.append(seeds_for_test(delta - floor, data.sd, tail, config.power))
    if margin < 0:
        counts.append(seeds_for_test(-margin, data.sd, tail, config.power, lab_var, float(lab.df)))
    if config.absolute_floor is not None and delta < floor:
        counts.append(seeds_for_test(floor - delta, data.sd, tail, config.power))
    reachable = [n for n in counts if n is not None]
    if reachable:
        n = min(reachable)
        return n, f"about {n} paired seeds would give {config.power:.0%} power to decide"
    if counts:
        return None, (
            f"more than {MAX_SEEDS} target seeds would be needed (or the lab effect is too "
            "imprecise): add lab seeds"
        )
    return None, "the estimates sit exactly on the decision thresholds: no seed count helps"
