"""The leaderboard winner's figures: naive, and corrected for the winner's curse.

The winner of a search looks better than it is because it was selected; the naive figure is
reported flagged as such, and the hybrid estimate corrects it when its assumptions hold.
"""

import numpy as np
from scipy import special

from labgap.stats.intervals import Effect, t_interval
from labgap.stats.schemas import DESCRIPTIVE_LEVEL, Candidate, num


def hybrid_winner(
    winner_mean: np.ndarray,
    winner_se: np.ndarray,
    runner_up: np.ndarray,
    n_candidates: int,
    alpha: float = 1.0 - DESCRIPTIVE_LEVEL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid estimate and interval for the winner of a leaderboard (Andrews, Kitagawa &
    McCloskey 2024, 'Inference on winners', QJE), for independent normal candidate means.

    Given that it won, the winner's mean X is normal truncated to [runner_up, ∞). The hybrid
    method also truncates to the projection set |X − μ| ≤ c·se (c: simultaneous level 1 − β over
    all candidates, β = α/10), which keeps the interval short when the win was not close.
    The estimate is the median-unbiased μ (conditional CDF of X = 1/2); the interval inverts the
    same CDF with (α − β)/(1 − β) split over its two tails, so it covers with probability at
    least 1 − α. Returns (estimate, low, high).
    """
    beta = alpha / 10.0
    c = special.ndtri(0.5 + (1.0 - beta) ** (1.0 / n_candidates) / 2.0)
    tail = (alpha - beta) / (2.0 * (1.0 - beta))
    x, se, lower = (np.asarray(v, dtype=float) for v in (winner_mean, winner_se, runner_up))

    def conditional_cdf(mu: np.ndarray) -> np.ndarray:
        z_low = (np.maximum(lower, mu - c * se) - mu) / se
        z = (x - mu) / se
        p_low = special.ndtr(z_low)
        return (special.ndtr(z) - p_low) / (special.ndtr(c) - p_low)

    def solve(target: float) -> np.ndarray:
        """The CDF falls from 1 to 0 as μ goes from x − c·se to x + c·se: bisect."""
        lo, hi = x - c * se, x + c * se
        for _ in range(60):
            mid = (lo + hi) / 2.0
            above = conditional_cdf(mid) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return (lo + hi) / 2.0

    return solve(0.5), solve(1.0 - tail), solve(tail)


def winner_fields(
    candidates: list[Candidate] | None,
    selected: str | None,
    flags: list[str],
    reasons: list[str],
) -> dict:
    """Naive (selected) leaderboard figure, and the hybrid correction when its assumptions hold."""
    if not candidates:
        return {}
    best = max(candidates, key=lambda c: c.mean)
    chosen = next(c for c in candidates if c.name == selected) if selected else best
    naive = Effect(np.array(chosen.mean), np.array(chosen.se), np.array(chosen.n - 1.0))
    naive_low, naive_high = t_interval(naive, DESCRIPTIVE_LEVEL)
    flags.append("naive_upward_biased")
    fields = {
        "selected": chosen.name,
        "naive_estimate": chosen.mean,
        "naive_ci_low": num(naive_low),
        "naive_ci_high": num(naive_high),
        "naive_flag": "upward-biased (selected)",
    }
    others = [c for c in candidates if c is not chosen]
    if not others:
        reasons.append("one candidate: no selection, so no hybrid correction")
    elif chosen.mean < max(c.mean for c in others):
        reasons.append("hybrid correction skipped: the selected candidate is not the top mean")
    elif min(c.se for c in candidates) <= 0:
        reasons.append("hybrid correction skipped: a candidate has SE 0")
    else:
        estimate, low, high = hybrid_winner(
            chosen.mean, chosen.se, max(c.mean for c in others), len(candidates)
        )
        fields |= {
            "hybrid_estimate": num(estimate),
            "hybrid_ci_low": num(low),
            "hybrid_ci_high": num(high),
        }
    return fields
