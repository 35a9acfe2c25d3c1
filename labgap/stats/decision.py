"""The verdict rule, and its reasons in words.

Each target allows two claims ("replicated": Δ_j > 0, "failed": Δ_j < ρ_min·Δ_lab). Targets are
grouped into families, one per headline question (generalisation: held-out tasks; production:
production targets). Deciding with two-sided intervals at level 1 − α/J_f within a family of J_f
targets is Bonferroni over its 2·J_f one-sided claims, so the chance of any false claim in a
family is at most α, and of a false claim of one kind at most α/2. With the sequential design
each interval is a repeated confidence interval at its look's nominal level, which keeps that
bound under any stopping rule. `decide` works on arrays with leading "study" axes: `analyse_gap`
calls it with one study, the calibration suite with thousands.
"""

from dataclasses import dataclass

import numpy as np

from labgap.stats.intervals import Effect, Margin, margin_bound, t_interval
from labgap.stats.schemas import FAILED, INCONCLUSIVE, REPLICATED, GapConfig


@dataclass(frozen=True)
class Decisions:
    """Verdict arrays for studies with shape S (lab) and S + (J,) (targets)."""

    lab_level: np.ndarray
    levels: np.ndarray
    lab_low: np.ndarray
    lab_high: np.ndarray
    lab_positive: np.ndarray
    lab_negative: np.ndarray
    low: np.ndarray
    high: np.ndarray
    margin: Margin
    failed_margin: np.ndarray
    below_floor: np.ndarray
    verdict: np.ndarray


def decide(
    lab: Effect,
    targets: Effect,
    *,
    lab_level,
    levels,
    rho_min: float,
    absolute_floor: float | None = None,
) -> Decisions:
    """The verdict rule, for arrays of studies (targets on the last axis).

    `lab_level` is the two-sided level of the lab's interval, `levels` each target's (already
    divided by its family's size, and at its look's nominal level in a sequential design).
    No verdict is reached for any target unless the lab effect is positive (its lower bound
    > 0): there is nothing to transfer. With an absolute floor f: `replicated` needs Δ_j's lower
    bound > f, and Δ_j's upper bound < f is a failure too (flag `below_floor`).
    """
    lab_level = np.broadcast_to(np.asarray(lab_level, dtype=float), np.shape(lab.delta))
    levels = np.broadcast_to(np.asarray(levels, dtype=float), np.shape(targets.delta))
    lab_low, lab_high = t_interval(lab, lab_level)
    low, high = t_interval(targets, levels)
    lab_on_targets = Effect(*(np.asarray(x)[..., None] for x in lab))
    margin = margin_bound(targets, lab_on_targets, rho_min, levels)
    with np.errstate(invalid="ignore"):
        lab_positive, lab_negative = lab_low > 0, lab_high < 0
        failed_margin = margin.upper < 0
        if absolute_floor is None:
            floor, below_floor = 0.0, np.zeros_like(failed_margin)
        else:
            floor, below_floor = absolute_floor, high < absolute_floor
        judged = lab_positive[..., None]
        failed = judged & (failed_margin | below_floor)
        replicated = judged & (low > floor) & ~failed
    verdict = np.where(failed, FAILED, np.where(replicated, REPLICATED, INCONCLUSIVE))
    return Decisions(
        lab_level=lab_level,
        levels=levels,
        lab_low=lab_low,
        lab_high=lab_high,
        lab_positive=lab_positive,
        lab_negative=lab_negative,
        low=low,
        high=high,
        margin=margin,
        failed_margin=failed_margin,
        below_floor=below_floor,
        verdict=verdict,
    )


def family_verdict(verdicts: np.ndarray) -> np.ndarray:
    """A headline verdict from its family's target verdicts (targets on the last axis):
    `replicated` only if every target replicated, `failed_to_replicate` if any failed (the
    effect does not survive everywhere the question covers), else `inconclusive`."""
    return np.where(
        (verdicts == FAILED).any(axis=-1),
        FAILED,
        np.where((verdicts == REPLICATED).all(axis=-1), REPLICATED, INCONCLUSIVE),
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


def next_looks(
    lab_positive: np.ndarray,
    lab_negative: np.ndarray,
    verdict: np.ndarray,
    lab_look: np.ndarray,
    looks: np.ndarray,
    n_looks: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The sequential design's stopping rule: which questions get another batch of seeds.

    The lab comes first: while it is neither established (positive) nor refuted (negative) and
    below its cap, only the lab gets more seeds (a target is judged only once there is an effect
    to transfer). Once it is established, every target still `inconclusive` below its cap gets
    more; a decided target stops. Returns (lab gets more, each target gets more), shaped like the
    lab and the targets. Any stopping rule keeps the repeated intervals' guarantee; this one
    spends seeds only where a verdict is still open."""
    lab_open = ~lab_positive & ~lab_negative & (lab_look < n_looks)
    targets_open = lab_positive[..., None] & (verdict == INCONCLUSIVE) & (looks < n_looks)
    return lab_open, targets_open
