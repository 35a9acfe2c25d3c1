"""t intervals, their tests, and the margin and ratio intervals built from them.

With 3-10 seeds bootstrap intervals under-cover, so every interval is a t interval: paired when
baseline and method ran on the same seeds, Welch when they did not. Everything works on numpy
arrays with any leading "study" axes, so one study and the calibration suite's thousands take the
same path.
"""

import math
from typing import NamedTuple

import numpy as np
from scipy import special, stats


class Effect(NamedTuple):
    """Point estimate, standard error and t degrees of freedom (arrays of one shape)."""

    delta: np.ndarray
    se: np.ndarray
    df: np.ndarray


def is_usable(effect: Effect) -> np.ndarray:
    """A t interval needs a positive finite SE and positive df; anything else gives NaN bounds."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(effect.se) & (effect.se > 0) & (effect.df > 0)


def paired_effect(diffs: np.ndarray) -> Effect:
    """Paired t summary of per-seed effects along the last axis (NaN SE below 2 seeds)."""
    diffs = np.asarray(diffs, dtype=float)
    n = diffs.shape[-1]
    delta = diffs.mean(axis=-1) if n else np.full(diffs.shape[:-1], np.nan)
    if n < 2:
        nan = np.full(delta.shape, np.nan)
        return Effect(delta, nan, nan)
    se = diffs.std(axis=-1, ddof=1) / math.sqrt(n)
    return Effect(delta, se, np.full(delta.shape, n - 1.0))


def welch_effect(baseline: np.ndarray, method: np.ndarray) -> Effect:
    """Welch t summary of method minus baseline, each a group along the last axis."""
    baseline, method = np.asarray(baseline, dtype=float), np.asarray(method, dtype=float)
    n_b, n_m = baseline.shape[-1], method.shape[-1]
    delta = method.mean(axis=-1) - baseline.mean(axis=-1)
    if min(n_b, n_m) < 2:
        nan = np.full(delta.shape, np.nan)
        return Effect(delta, nan, nan)
    var_b = baseline.var(axis=-1, ddof=1) / n_b
    var_m = method.var(axis=-1, ddof=1) / n_m
    return Effect(delta, np.sqrt(var_b + var_m), welch_df(var_b, n_b - 1.0, var_m, n_m - 1.0))


def _quantile(level: float, df: np.ndarray) -> np.ndarray:
    """Two-sided t quantile; NaN where df is not usable."""
    with np.errstate(invalid="ignore"):
        return special.stdtrit(np.where(df > 0, df, np.nan), 0.5 + level / 2.0)


def t_interval(effect: Effect, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval; NaN bounds where the SE is zero or undefined (no inference)."""
    usable = is_usable(effect)
    half = _quantile(level, effect.df) * effect.se
    low = np.where(usable, effect.delta - half, np.nan)
    high = np.where(usable, effect.delta + half, np.nan)
    return low, high


def t_p_value(effect: Effect) -> np.ndarray:
    """Two-sided p-value for a zero effect; NaN where no inference is possible."""
    usable = is_usable(effect)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * stats.t.sf(np.abs(effect.delta / effect.se), np.where(usable, effect.df, np.nan))
    return np.where(usable, p, np.nan)


def welch_df(var_a, df_a, var_b, df_b):
    """Welch–Satterthwaite degrees of freedom of a sum of two independent variance terms."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (var_a + var_b) ** 2 / (var_a**2 / df_a + var_b**2 / df_b)


def cochran_cox_quantile(var_a, df_a, var_b, df_b, tail: float):
    """One-sided critical value for a sum of two independent variance terms (Cochran & Cox
    1950): the variance-weighted mean of each term's own t quantile."""
    with np.errstate(invalid="ignore", divide="ignore"):
        q_a = special.stdtrit(df_a, 1.0 - tail)
        q_b = special.stdtrit(df_b, 1.0 - tail)
        return np.where(var_b > 0, (var_a * q_a + var_b * q_b) / (var_a + var_b), q_a)


class Margin(NamedTuple):
    """Δ_j − ρ_min·Δ_lab, its SE, and the upper end of its interval (what `decide` tests)."""

    delta: np.ndarray
    se: np.ndarray
    upper: np.ndarray


def margin_bound(target: Effect, lab: Effect, rho_min: float, level: float) -> Margin:
    """Δ_j − ρ_min·Δ_lab and the upper end of its two-sided interval at `level`.

    The samples are independent, so the variances add. The critical value is Cochran–Cox, not
    Welch–Satterthwaite: with 3 target seeds and a precise lab, the Welch–Satterthwaite df jumps
    whenever the target's sample variance is small by chance, and the margin test then rejected
    up to twice as often as nominal in the far tail (P(any failed) 0.046 instead of ≤ 0.025 at
    J = 3); Cochran–Cox stayed at or below nominal in every configuration tried, and matches it
    when one sample dominates. `lab` broadcasts against `target` (pass lab[..., None]).
    """
    usable = is_usable(target) & is_usable(lab)
    var_t, var_l = target.se**2, (rho_min * lab.se) ** 2
    delta = target.delta - rho_min * lab.delta
    se = np.where(usable, np.sqrt(var_t + var_l), np.nan)
    q = cochran_cox_quantile(var_t, target.df, var_l, lab.df, (1.0 - level) / 2.0)
    return Margin(delta, se, np.where(usable, delta + q * se, np.nan))


def fieller_interval(
    numerator: Effect, denominator: Effect, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fieller set for the ratio of two independent effects (ρ = Δ_j / Δ_lab).

    The set is every ρ that the Welch test of a − ρb = 0 does not reject: |a − ρb| ≤
    q(df(ρ))·sqrt(se_a² + ρ²se_b²), with the Welch–Satterthwaite df taken at that very ρ (a
    plug-in df at ρ = a/b under-covered, 0.92, with 3 target seeds). The set is an interval when
    the denominator's own interval excludes 0, otherwise the complement of an interval
    (−∞, low] ∪ [high, ∞) or the whole line.

    Solved on the angle θ = arctan ρ, where ρ = ±∞ is an ordinary point: the set is the arc
    around θ̂ = arctan(a/b) on which h(θ) = (a·cosθ − b·sinθ)² − q²·(se_a²cos²θ + se_b²sin²θ)
    is ≤ 0; its ends are found by bisection from a grid point where h > 0.
    Returns (low, high, kind code into RHO_KINDS); infinite ends are ±inf, undefined ends NaN.
    """
    a, se_a, df_a = (np.asarray(x, dtype=float) for x in numerator)
    b, se_b, df_b = (np.asarray(x, dtype=float) for x in denominator)
    usable = is_usable(numerator) & is_usable(denominator)
    a, b = np.where(usable, a, 0.0), np.where(usable, b, 1.0)
    var_a, var_b = np.where(usable, se_a**2, 1.0), np.where(usable, se_b**2, 1.0)
    df_a, df_b = np.where(usable, df_a, 1.0), np.where(usable, df_b, 1.0)

    def h(theta: np.ndarray) -> np.ndarray:
        cos, sin = np.cos(theta), np.sin(theta)
        w_a, w_b = var_a[..., None] * cos**2, var_b[..., None] * sin**2
        df = welch_df(w_a, df_a[..., None], w_b, df_b[..., None])
        q = _quantile(level, df)
        return (a[..., None] * cos - b[..., None] * sin) ** 2 - q**2 * (w_a + w_b)

    theta_hat = np.arctan2(a, b)
    theta_hat = np.where(theta_hat > np.pi / 2, theta_hat - np.pi, theta_hat)
    theta_hat = np.where(theta_hat <= -np.pi / 2, theta_hat + np.pi, theta_hat)
    grid = theta_hat[..., None] + np.linspace(0.0, np.pi, 66)[1:-1]
    h_grid = h(grid)
    outside = np.take_along_axis(grid, h_grid.argmax(axis=-1)[..., None], axis=-1)[..., 0]
    whole_line = h_grid.max(axis=-1) <= 0

    def boundary(inside: np.ndarray, out: np.ndarray) -> np.ndarray:
        for _ in range(55):
            mid = (inside + out) / 2.0
            mid_inside = h(mid[..., None])[..., 0] <= 0
            inside, out = np.where(mid_inside, mid, inside), np.where(mid_inside, out, mid)
        return (inside + out) / 2.0

    theta_up = boundary(theta_hat, outside)
    theta_down = boundary(theta_hat, outside - np.pi)
    bounded = usable & ~whole_line & (theta_up < np.pi / 2) & (theta_down > -np.pi / 2)
    complement = usable & ~whole_line & ~bounded
    unbounded = usable & whole_line
    rho_up, rho_down = np.tan(theta_up), np.tan(theta_down)
    low = np.select([bounded, complement, unbounded], [rho_down, rho_up, -np.inf], np.nan)
    high = np.select([bounded, complement, unbounded], [rho_up, rho_down, np.inf], np.nan)
    kind = np.select([bounded, complement, unbounded], [1, 2, 3], 0)
    return low, high, kind
