"""Group-sequential looks: seeds are added in batches while a question is open.

A study looks at each task after `start`, `start + batch`, ... seeds, up to `cap`. At look k
every interval is a repeated confidence interval (Jennison & Turnbull 2000, ch. 9): its
two-sided nominal level comes from an alpha-spending function over the planned looks (Lan &
DeMets 1983), so the intervals of all looks cover together with probability 1 − α and any
stopping rule — stop when decided, at the cap, when the budget runs out, or when the lab is
not established — keeps the error rates. The boundaries are computed for a normal statistic
with known variance and applied to t statistics with the same per-look tail probability (the
"significance level" approach for an estimated variance); the calibration suite measures the
rates that gives.
"""

from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import special

Design = Literal["fixed", "sequential"]
StopReason = Literal["decided", "cap", "budget", "no_lab_effect", "fixed"]

GRID_POINTS = 601
"""Points per look in the numerical integration of the crossing probabilities."""

SPENDING_GAMMA = 1.0
"""Hwang–Shih–DeCani spending parameter: γ = 1 spends nearly evenly over the looks (close to
Pocock), so the first looks at 4–6 seeds can decide a clear effect; a negative γ would spend
like O'Brien–Fleming and leave the small early looks almost powerless with t quantiles."""


class Schedule(BaseModel):
    """The planned looks of a task: `start` seeds, then `batch` more at a time, up to `cap`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: Annotated[int, Field(ge=2)]
    batch: Annotated[int, Field(ge=1)]
    cap: Annotated[int, Field(ge=2)]

    @model_validator(mode="after")
    def _cap_after_start(self) -> "Schedule":
        if self.cap < self.start:
            raise ValueError(f"cap: {self.cap} is below the first look's {self.start} seeds")
        return self

    @property
    def sizes(self) -> list[int]:
        """Seeds at each planned look (the last is the cap)."""
        sizes = list(range(self.start, self.cap, self.batch))
        return [*sizes, self.cap]

    def look_of(self, seeds: int) -> int:
        """1-based index of the first look whose planned size covers `seeds` paired seeds."""
        return next((k for k, n in enumerate(self.sizes, 1) if seeds <= n), len(self.sizes))


def spent(fraction: np.ndarray, alpha: float) -> np.ndarray:
    """Hwang–Shih–DeCani cumulative alpha spent at information fraction t ∈ [0, 1]."""
    gamma = SPENDING_GAMMA
    return alpha * (1.0 - np.exp(-gamma * fraction)) / (1.0 - np.exp(-gamma))


def _exit_probability(density, grid, weights, bound, step_sd) -> float:
    """P(the next statistic leaves (−bound, bound)) from a sub-density on `grid`."""
    outside = special.ndtr((-bound - grid) / step_sd) + special.ndtr((grid - bound) / step_sd)
    return float(np.sum(weights * density * outside))


@lru_cache(maxsize=256)
def z_boundaries(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    """Two-sided z boundaries c_k with P(|Z_k| ≥ c_k first at look k) = spent(t_k) − spent(t_k−1)
    under the null, by recursive numerical integration of the score process S_k = Z_k·√t_k
    (Armitage, McPherson & Rowe 1969): independent increments N(0, t_k − t_k−1)."""
    targets = np.diff(spent(np.array((0.0, *fractions)), alpha))
    bounds: list[float] = []
    grid = weights = density = None
    previous = 0.0
    for t, target in zip(fractions, targets, strict=True):
        step_sd = np.sqrt(t - previous)
        if density is None:
            bound_z = float(special.ndtri(1.0 - target / 2.0))
        else:
            low, high = 0.0, 40.0
            for _ in range(60):
                mid = (low + high) / 2.0
                crossing = _exit_probability(density, grid, weights, mid * np.sqrt(t), step_sd)
                low, high = (mid, high) if crossing > target else (low, mid)
            bound_z = (low + high) / 2.0
        bounds.append(bound_z)
        edge = bound_z * np.sqrt(t)
        new_grid = np.linspace(-edge, edge, GRID_POINTS)
        new_weights = np.full(GRID_POINTS, new_grid[1] - new_grid[0])
        new_weights[[0, -1]] /= 2.0
        if density is None:
            new_density = np.exp(-0.5 * new_grid**2 / t) / np.sqrt(2.0 * np.pi * t)
        else:
            kernel = np.exp(-0.5 * ((new_grid[:, None] - grid[None, :]) / step_sd) ** 2)
            kernel /= np.sqrt(2.0 * np.pi) * step_sd
            new_density = kernel @ (weights * density)
        grid, weights, density, previous = new_grid, new_weights, new_density, t
    return tuple(bounds)


def nominal_levels(schedule: Schedule, alpha: float) -> tuple[float, ...]:
    """Two-sided nominal level of the repeated confidence interval at each planned look."""
    fractions = tuple(n / schedule.cap for n in schedule.sizes)
    return tuple(
        float(1.0 - 2.0 * special.ndtr(-c)) for c in z_boundaries(fractions, round(alpha, 12))
    )


def look_level(design: Design, schedule: Schedule | None, alpha: float, look: int) -> float:
    """The level of the interval that decides at `look`: 1 − α with a fixed design."""
    if design == "fixed" or schedule is None:
        return 1.0 - alpha
    levels = nominal_levels(schedule, alpha)
    return levels[min(look, len(levels)) - 1]
