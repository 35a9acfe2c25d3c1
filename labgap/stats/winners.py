"""The leaderboard winner's figures: naive, and corrected for the winner's curse.

The winner of a search looks better than it is because it was selected; the naive figure is
reported flagged as such, and the hybrid estimate corrects it when its assumptions hold.
"""

import numpy as np
from scipy import special, stats

from labgap.stats.intervals import Effect, t_interval
from labgap.stats.schemas import DESCRIPTIVE_LEVEL, Candidate, SearchBaseline, num


def hybrid_winner(
    winner_mean: np.ndarray,
    winner_se: np.ndarray,
    lower: np.ndarray,
    n_candidates: int,
    alpha: float = 1.0 - DESCRIPTIVE_LEVEL,
    df: float = np.inf,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid estimate and interval for the winner of a leaderboard (Andrews, Kitagawa &
    McCloskey 2024, 'Inference on winners', QJE), for normal candidate means.

    Given that it won, the winner's mean X is normal truncated to [lower, ∞) (independent
    candidates: lower is the runner-up's mean). The hybrid method also truncates to the
    projection set |X − μ| ≤ c·se (c: simultaneous level 1 − β over all candidates, β = α/10;
    Šidák, so also valid for positively correlated candidates), which keeps the interval short
    when the win was not close. The estimate is the median-unbiased μ (conditional CDF of X = 1/2);
    the interval inverts the same CDF with (α − β)/(1 − β) split over its two tails, so it covers
    with probability at least 1 − α. When se is estimated with `df` degrees of freedom, the
    interval's distances from X are stretched by t_df/z at that tail (the t interval in the limit
    of a clear win); the estimate keeps the plug-in se. Returns (estimate, low, high).
    """
    beta = alpha / 10.0
    c = special.ndtri(0.5 + (1.0 - beta) ** (1.0 / n_candidates) / 2.0)
    tail = (alpha - beta) / (2.0 * (1.0 - beta))
    x, se, lower = (np.asarray(v, dtype=float) for v in (winner_mean, winner_se, lower))

    def solve(target: float, stretch: float) -> np.ndarray:
        """The CDF falls from 1 to 0 as μ goes from x − c·se to x + c·se: bisect."""
        s, low_end = se * stretch, x - (x - lower) * stretch

        def conditional_cdf(mu: np.ndarray) -> np.ndarray:
            """At a tie (X at its truncation point) the set is empty at μ = X − c·se: 0/0 there,
            taken as 0, the limit the CDF has everywhere else at a tie."""
            p_low = special.ndtr((np.maximum(low_end, mu - c * s) - mu) / s)
            mass = special.ndtr(c) - p_low
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(mass > 0, (special.ndtr((x - mu) / s) - p_low) / mass, 0.0)

        lo, hi = x - c * s, x + c * s
        for _ in range(60):
            mid = (lo + hi) / 2.0
            above = conditional_cdf(mid) > target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return (lo + hi) / 2.0

    stretch = float(stats.t.ppf(1.0 - tail, df) / special.ndtri(1.0 - tail))
    estimate = solve(0.5, 1.0)
    # Near a tie every solution sits at the projection set's low end, the stretched ones below
    # the estimate: the interval is widened to hold it (wider never covers less).
    low = np.minimum(solve(1.0 - tail, stretch), estimate)
    return estimate, low, np.maximum(solve(tail, stretch), estimate)


def pooled_variance(candidates: list[Candidate], baseline: SearchBaseline) -> tuple[float, int]:
    """One per-seed variance of dev PGR over every candidate and the baseline, and its degrees of
    freedom Σ(n − 1): with 2–3 search seeds a candidate's own SE is too noisy to plug in (the
    hybrid interval covered about 60% in simulation). Assumes equal seed-to-seed spread."""
    df = sum(c.n - 1 for c in candidates) + baseline.n - 1
    squares = sum((c.n - 1) * c.n * c.se**2 for c in candidates)
    squares += (baseline.n - 1) * baseline.n * (baseline.se or 0.0) ** 2
    return (squares / df if df else 0.0), df


def corrected_winner(
    winner: np.ndarray,
    runner_up: np.ndarray,
    variance: np.ndarray,
    n_winner: int,
    n_baseline: int,
    n_candidates: int,
    df: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid (estimate, low, high) of the top candidate's effect, from the pooled variance.

    Every effect is a candidate's mean minus the same baseline mean, so its variance is that of a
    difference, v_k + v_b, and any two effects share the covariance v_b. (Seeds are taken as
    independent across methods: a seed component shared by all methods cancels in the effects
    but inflates the pooled variance, which widens the interval and pulls the estimate down.)
    The selection compares candidate means only, so, conditioning as Andrews, Kitagawa &
    McCloskey do on the other effects' residuals, the winner's effect X is truncated to
    X ≥ X − (X − runner-up)·(v_W + v_b)/v_W: treating v_b as independent noise per candidate
    with the runner-up as the bound would over-correct (P(estimate > truth) ≈ 0.3).
    """
    v_winner, v_base = variance / n_winner, variance / n_baseline
    lower = winner - (winner - runner_up) * (v_winner + v_base) / v_winner
    return hybrid_winner(winner, np.sqrt(v_winner + v_base), lower, n_candidates, df=df)


def winner_fields(
    candidates: list[Candidate] | None,
    selected: str | None,
    baseline: SearchBaseline | None,
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
    variance, df = pooled_variance(candidates, baseline) if baseline else (0.0, 0)
    skipped = "hybrid correction not shown: "
    if not others:
        reasons.append("one candidate: no selection, so no hybrid correction")
    elif chosen.mean < max(c.mean for c in others):
        reasons.append(skipped + "the selected candidate is not the top mean")
    elif baseline is None:
        reasons.append(skipped + "the baseline's search seeds are unknown, so is the effects' SE")
    elif df == 0:
        reasons.append(skipped + "every method ran on one search seed: no seed-to-seed variance")
    elif variance <= 0:
        reasons.append(skipped + "no seed-to-seed spread in the search (pooled SE 0)")
    else:
        runner_up = max(c.mean for c in others)
        estimate, low, high = corrected_winner(
            chosen.mean, runner_up, variance, chosen.n, baseline.n, len(candidates), df
        )
        reasons.append(
            f"hybrid: corrected for picking the top of {len(candidates)} candidates, with one "
            f"seed-to-seed SD pooled over them and the baseline ({df} df)"
        )
        fields |= {
            "hybrid_estimate": num(estimate),
            "hybrid_ci_low": num(low),
            "hybrid_ci_high": num(high),
        }
    return fields
