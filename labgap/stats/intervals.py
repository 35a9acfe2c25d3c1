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


FIELLER_CELLS = 512
"""Grid cells on the half circle searched for the ends of a Fieller set's pieces: a piece or a
gap narrower than one cell (π/512 in angle) can be missed. On 40,000 simulated 3-seed sets, 512
cells gave the sets 4096 did; 256 missed one piece, 64 (the old grid) 81."""


def _welch_h(theta, a, b, var_a, var_b, df_a, df_b, level: float) -> np.ndarray:
    """≤ 0 exactly where the Welch test of a − ρb = 0, with its df taken at ρ = tan θ, accepts:
    (a·cosθ − b·sinθ)² − q(df(θ))²·(var_a·cos²θ + var_b·sin²θ). π-periodic in θ."""
    cos, sin = np.cos(theta), np.sin(theta)
    w_a, w_b = var_a * cos**2, var_b * sin**2
    q = _quantile(level, welch_df(w_a, df_a, w_b, df_b))
    return (a * cos - b * sin) ** 2 - q**2 * (w_a + w_b)


class _Ends(NamedTuple):
    """The sign changes of h on (θ̂, θ̂ + π) of flattened studies: how many, the first (upper end
    of the piece holding θ̂), the last minus π (its lower end), and all, by study then angle."""

    usable: np.ndarray
    count: np.ndarray
    up: np.ndarray
    down: np.ndarray
    roots: np.ndarray


def _fieller_ends(numerator: Effect, denominator: Effect, level: float) -> tuple[_Ends, tuple]:
    """Every sign change of h on a grid over the half circle from θ̂ = arctan(a/b), each refined
    by bisection. h(θ̂) < 0, so the grid starts and ends inside and the count is even."""
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (*numerator, *denominator)))
    shape = arrays[0].shape
    a, se_a, df_a, b, se_b, df_b = (x.ravel() for x in arrays)
    usable = np.broadcast_to(is_usable(numerator) & is_usable(denominator), shape).ravel()
    a, b = np.where(usable, a, 0.0), np.where(usable, b, 1.0)
    params = (a, b, *(np.where(usable, x, 1.0) for x in (se_a**2, se_b**2, df_a, df_b)))

    def h(theta: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return _welch_h(theta, *(x[rows] for x in params), level)

    theta_hat = np.arctan2(a, b)
    theta_hat = np.where(theta_hat > np.pi / 2, theta_hat - np.pi, theta_hat)
    theta_hat = np.where(theta_hat <= -np.pi / 2, theta_hat + np.pi, theta_hat)
    grid = theta_hat[:, None] + np.linspace(0.0, np.pi, FIELLER_CELLS + 1)
    inside = h(grid, np.arange(a.size)[:, None]) <= 0
    inside[:, [0, -1]] = True
    study, cell = np.nonzero(inside[:, 1:] != inside[:, :-1])
    lo_inside = inside[study, cell]
    into = np.where(lo_inside, grid[study, cell], grid[study, cell + 1])
    out = np.where(lo_inside, grid[study, cell + 1], grid[study, cell])
    for _ in range(50):
        mid = (into + out) / 2.0
        mid_inside = h(mid, study) <= 0
        into, out = np.where(mid_inside, mid, into), np.where(mid_inside, out, mid)
    roots = (into + out) / 2.0
    count = np.bincount(study, minlength=a.size)
    first = np.cumsum(count) - count
    padded = np.append(roots, np.nan)  # studies without a sign change index past the end
    some = count > 0
    up = np.where(some, padded[first], np.nan)
    down = np.where(some, padded[first + count - 1] - np.pi, np.nan)
    return _Ends(usable, count, up, down, roots), shape


def fieller_interval(
    numerator: Effect, denominator: Effect, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fieller set for the ratio of two independent effects (ρ = Δ_j / Δ_lab).

    The set is every ρ that the Welch test of a − ρb = 0 does not reject: |a − ρb| ≤
    q(df(ρ))·sqrt(se_a² + ρ²se_b²), with the Welch–Satterthwaite df taken at that very ρ (a
    plug-in df at ρ = a/b under-covered, 0.92, with 3 target seeds). Usually the set is an
    interval (the denominator's own interval excludes 0), the complement of one, (−∞, low] ∪
    [high, ∞), or the whole line. Because the df moves with ρ, it can also split into several
    pieces ("union", kind 4; 0.65% of 3-seed sets with a positive lab effect, where the old
    search from θ̂ reported one interval, in a quarter of them with the ends of two pieces):
    then [low, high] is the piece holding ρ̂ = a/b, running through ±∞ when low > high, and
    `fieller_pieces` lists every piece.

    Solved on the angle θ = arctan ρ, where ρ = ±∞ is an ordinary point: the set is where
    `_welch_h` ≤ 0, and its pieces' ends are the sign changes of h around the half circle.
    Returns (low, high, kind code into RHO_KINDS); infinite ends are ±inf, undefined ends NaN.
    """
    ends, shape = _fieller_ends(numerator, denominator, level)
    crosses = (ends.up >= np.pi / 2) | (ends.down <= -np.pi / 2)
    kinds = [
        ends.usable & (ends.count == 2) & ~crosses,
        ends.usable & (ends.count == 2) & crosses,
        ends.usable & (ends.count == 0),
        ends.usable & (ends.count > 2),
    ]
    with np.errstate(invalid="ignore"):
        rho_up, rho_down = np.tan(ends.up), np.tan(ends.down)
    low = np.select(kinds, [rho_down, rho_up, -np.inf, rho_down], np.nan)
    high = np.select(kinds, [rho_up, rho_down, np.inf, rho_up], np.nan)
    kind = np.select(kinds, [1, 2, 3, 4], 0)
    return low.reshape(shape), high.reshape(shape), kind.reshape(shape)


def fieller_pieces(
    numerator: Effect, denominator: Effect, level: float
) -> list[tuple[float, float]]:
    """Every piece of one study's Fieller set (scalar effects), sorted, ends ±inf where the set
    runs to infinity, so a report can print "[a, b] ∪ [c, d]". Empty when it is undefined."""
    ends, _ = _fieller_ends(numerator, denominator, level)
    if not ends.usable[0]:
        return []
    roots = ends.roots
    if not roots.size:
        return [(-math.inf, math.inf)]
    arcs = [(roots[-1] - np.pi, roots[0]), *zip(roots[1:-1:2], roots[2:-1:2], strict=True)]
    pieces = []
    for start, end in arcs:
        low, high = float(np.tan(start)), float(np.tan(end))
        if math.floor(start / np.pi + 0.5) == math.floor(end / np.pi + 0.5):
            pieces.append((low, high))
        else:  # the arc passes ρ = ±∞
            pieces += [(low, math.inf), (-math.inf, high)]
    return sorted(pieces)
