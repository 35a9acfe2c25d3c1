"""The verdict rule, and its reasons in words.

Each target allows two claims ("replicated": Δ_j > 0, "failed": Δ_j < ρ_min·Δ_lab). Deciding
with two-sided intervals at level 1 - α/J is Bonferroni over all 2J one-sided claims, so the
chance of any false claim is at most α, and of a false claim of one kind at most α/2. `decide`
works on arrays with leading "study" axes: `analyse_gap` calls it with one study, the calibration
suite with thousands.
"""

from dataclasses import dataclass

import numpy as np

from labgap.stats.intervals import Effect, Margin, margin_bound, t_interval
from labgap.stats.schemas import FAILED, INCONCLUSIVE, REPLICATED, GapConfig


@dataclass(frozen=True)
class Decisions:
    """Verdict arrays for studies with shape S (lab) and S + (J,) (targets)."""

    level: float
    lab_low: np.ndarray
    lab_high: np.ndarray
    lab_positive: np.ndarray
    low: np.ndarray
    high: np.ndarray
    margin: Margin
    failed_margin: np.ndarray
    below_floor: np.ndarray
    verdict: np.ndarray
    overall: np.ndarray


def decide(
    lab: Effect,
    targets: Effect,
    *,
    alpha: float,
    rho_min: float,
    absolute_floor: float | None = None,
) -> Decisions:
    """The verdict rule, for arrays of studies (targets on the last axis).

    All decision intervals are two-sided at level 1 − α/J. No verdict is reached for any target
    unless the lab effect is positive (its lower bound > 0): there is nothing to transfer.
    With an absolute floor f: `replicated` needs Δ_j's lower bound > f, and Δ_j's upper bound < f
    is a failure too (flag `below_floor`).
    """
    n_targets = targets.delta.shape[-1]
    level = 1.0 - alpha / n_targets
    lab_low, lab_high = t_interval(lab, level)
    low, high = t_interval(targets, level)
    lab_on_targets = Effect(*(np.asarray(x)[..., None] for x in lab))
    margin = margin_bound(targets, lab_on_targets, rho_min, level)
    with np.errstate(invalid="ignore"):
        lab_positive = lab_low > 0
        failed_margin = margin.upper < 0
        if absolute_floor is None:
            floor, below_floor = 0.0, np.zeros_like(failed_margin)
        else:
            floor, below_floor = absolute_floor, high < absolute_floor
        judged = lab_positive[..., None]
        failed = judged & (failed_margin | below_floor)
        replicated = judged & (low > floor) & ~failed
    verdict = np.where(failed, FAILED, np.where(replicated, REPLICATED, INCONCLUSIVE))
    overall = np.where(
        replicated.any(axis=-1), REPLICATED, np.where(failed.all(axis=-1), FAILED, INCONCLUSIVE)
    )
    return Decisions(
        level=level,
        lab_low=lab_low,
        lab_high=lab_high,
        lab_positive=lab_positive,
        low=low,
        high=high,
        margin=margin,
        failed_margin=failed_margin,
        below_floor=below_floor,
        verdict=verdict,
        overall=overall,
    )


def verdict_reasons(
    verdict: str, low, margin_upper, high, config: GapConfig, level: float
) -> tuple[list[str], list[str]]:
    """Flags and reasons, in words, for the verdict of a target that was judged."""
    floor = config.absolute_floor or 0.0
    at = f"at level {level:.4g}"
    if verdict == "replicated":
        return [], [f"Δ's lower bound {at} is {low:.4g} > {floor:g}: the effect carries over"]
    if verdict == "inconclusive":
        return [], [
            f"Δ's interval {at} is [{low:.4g}, {high:.4g}] and the upper bound of "
            f"Δ - {config.rho_min:g}·Δ_lab is {margin_upper:.4g}: neither verdict is reached"
        ]
    flags, reasons = [], []
    if margin_upper < 0:
        reasons.append(
            f"the upper bound of Δ - {config.rho_min:g}·Δ_lab {at} is {margin_upper:.4g} < 0: "
            f"the target keeps less than {config.rho_min:.0%} of the lab effect"
        )
    if config.absolute_floor is not None and high < floor:
        flags.append("below_floor")
        reasons.append(f"Δ's upper bound {at} is {high:.4g} < the absolute floor {floor:g}")
    if low > 0:
        flags.append("nonzero")
        reasons.append(f"the effect is still positive (lower bound {low:.4g} > 0), but too small")
    return flags, reasons
