"""Lab-versus-production gap analysis (DESIGN.md §7).

Why it is built this way:

* With 3-10 seeds bootstrap intervals under-cover, so every interval is a t interval: paired when
  baseline and method ran on the same seeds, Welch when they did not.
* Effects are in PGR units with ONE denominator per task (the mean ceiling-weak gap over the task's
  seeds). A per-seed PGR ratio explodes on seeds whose gap is small.
* Each target allows two claims ("replicated": Δ_j > 0, "failed": Δ_j < ρ_min·Δ_lab). Deciding
  with two-sided intervals at level 1 - α/J is Bonferroni over all 2J one-sided claims, so the
  chance of any false claim is at most α, and of a false claim of one kind at most α/2.
* The decision logic (`decide`) works on numpy arrays with leading "study" axes. `analyse_gap`
  calls it with one study; the calibration suite calls the very same function with thousands.

Pure Python + numpy/scipy/statsmodels: no Prefect imports, so tasks stay thin wrappers.
"""

import math
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from scipy import special, stats
from statsmodels.stats.multitest import multipletests

INCONCLUSIVE, REPLICATED, FAILED = 0, 1, 2
VERDICTS = ("inconclusive", "replicated", "failed_to_replicate")
"""Verdict names, indexed by the integer codes `decide` returns."""

RHO_KINDS = ("undefined", "bounded", "complement", "unbounded")
"""Shapes of a Fieller set, indexed by the codes `fieller_interval` returns."""

Verdict = Literal["replicated", "failed_to_replicate", "inconclusive"]
RhoKind = Literal["undefined", "bounded", "complement", "unbounded"]

DESCRIPTIVE_LEVEL = 0.95
"""Level of the intervals reported for reading (ci95, prediction, naive, hybrid)."""

MAX_SEEDS = 100_000
"""Seed counts beyond this are reported as unreachable rather than searched for."""

SAME_ACCURACY = 1e-12
"""Accuracy differences closer than this are equal (float noise, not seed-to-seed variance)."""

Accuracy = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(gt=0.0, lt=1.0)]


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
class SeedResult(BaseModel):
    """One seed of one task. An arm that was not run on this seed is None (unpaired designs,
    or a paired run that lost one arm); weak and ceiling are needed for the PGR denominator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int
    weak_acc: Accuracy
    ceiling_acc: Accuracy
    baseline_acc: Accuracy | None
    method_acc: Accuracy | None


def _unique_seeds(seeds: list[SeedResult]) -> list[SeedResult]:
    ids = [s.seed for s in seeds]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate seed ids {duplicates}: one SeedResult per seed")
    return seeds


class TaskSample(BaseModel):
    """All seeds of one task. paired=True: baseline and method ran on the same seeds (paired t on
    the seeds that have both arms). paired=False: they ran on different seeds; each SeedResult
    then carries whichever arm ran on that seed (Welch t on the two groups)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    seeds: Annotated[list[SeedResult], AfterValidator(_unique_seeds)]
    paired: bool = True


class Candidate(BaseModel):
    """One leaderboard entry: mean dev effect (PGR units, same scale as the lab effect) and SE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    mean: Finite
    se: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    n: Annotated[int, Field(ge=1)]


class GapConfig(BaseModel):
    """Pre-registered settings of the gap analysis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    rho_min: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    absolute_floor: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    power: Probability = 0.8


def _unique_names(targets: list[TaskSample]) -> list[TaskSample]:
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"target names must be unique, got {names}")
    return targets


class _StudyInput(BaseModel):
    """Validates the arguments of `analyse_gap` together, so errors name the offending field."""

    lab: TaskSample
    targets: Annotated[list[TaskSample], Field(min_length=1), AfterValidator(_unique_names)]
    config: GapConfig
    candidates: Annotated[list[Candidate], Field(min_length=1)] | None = None
    selected: str | None = None

    @model_validator(mode="after")
    def _selected_is_a_candidate(self) -> "_StudyInput":
        if self.selected is None:
            return self
        if self.candidates is None:
            raise ValueError("selected: given without candidates")
        if self.selected not in {c.name for c in self.candidates}:
            raise ValueError(f"selected: {self.selected!r} is not among the candidates")
        return self


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
class EffectEstimate(BaseModel):
    """What the lab and every target report alike: the sample and the effect in PGR units."""

    model_config = ConfigDict(frozen=True)

    name: str
    paired: bool
    n: int
    n_baseline: int
    n_method: int
    denominator: float | None
    delta: float | None
    se: float | None
    df: float | None


def _estimate_fields(data) -> dict:
    """The `EffectEstimate` fields of a lab or target sample."""
    return {
        "name": data.name,
        "paired": data.paired,
        "n": data.n,
        "n_baseline": data.n_baseline,
        "n_method": data.n_method,
        "denominator": data.denominator,
        "delta": _num(data.effect.delta),
        "se": _num(data.effect.se),
        "df": _num(data.effect.df),
    }


class LabEffect(EffectEstimate):
    """The lab effect on fresh seeds, with the naive (selected) leaderboard figure beside it."""

    ci_low: float | None
    ci_high: float | None
    ci_adj_low: float | None
    ci_adj_high: float | None
    p_value: float | None
    positive: bool
    seeds_needed: int | None
    selected: str | None = None
    naive_estimate: float | None = None
    naive_ci_low: float | None = None
    naive_ci_high: float | None = None
    naive_flag: str | None = None
    hybrid_estimate: float | None = None
    hybrid_ci_low: float | None = None
    hybrid_ci_high: float | None = None
    flags: list[str]
    reasons: list[str]


class TargetGap(EffectEstimate):
    """One target: its effect, transfer ratio, verdict and the side figures (never deciding)."""

    ci95_low: float | None
    ci95_high: float | None
    ci_adj_low: float | None
    ci_adj_high: float | None
    p_value: float | None
    p_holm: float | None
    rho: float | None
    rho_ci_low: float | None
    rho_ci_high: float | None
    rho_ci_kind: RhoKind
    margin: float | None
    margin_se: float | None
    margin_upper: float | None
    verdict: Verdict
    seeds_needed: int | None
    prediction_low: float | None
    prediction_high: float | None
    bayes_factor: float | None
    log10_bayes_factor: float | None
    prob_improvement: float | None
    flags: list[str]
    reasons: list[str]


class GapAnalysis(BaseModel):
    """Everything the report and DuckDB need; all numbers are plain floats or None."""

    model_config = ConfigDict(frozen=True)

    lab: LabEffect
    targets: list[TargetGap]
    overall_verdict: Verdict
    overall_flags: list[str]
    overall_reasons: list[str]
    alpha: float
    rho_min: float
    absolute_floor: float | None
    level: float


# --------------------------------------------------------------------------------------------
# Vectorised core: arrays with any leading "study" axes
# --------------------------------------------------------------------------------------------
class Effect(NamedTuple):
    """Point estimate, standard error and t degrees of freedom (arrays of one shape)."""

    delta: np.ndarray
    se: np.ndarray
    df: np.ndarray


def _usable(effect: Effect) -> np.ndarray:
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
    return Effect(delta, np.sqrt(var_b + var_m), _welch_df(var_b, n_b - 1.0, var_m, n_m - 1.0))


def _quantile(level: float, df: np.ndarray) -> np.ndarray:
    """Two-sided t quantile; NaN where df is not usable."""
    with np.errstate(invalid="ignore"):
        return special.stdtrit(np.where(df > 0, df, np.nan), 0.5 + level / 2.0)


def t_interval(effect: Effect, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval; NaN bounds where the SE is zero or undefined (no inference)."""
    usable = _usable(effect)
    half = _quantile(level, effect.df) * effect.se
    low = np.where(usable, effect.delta - half, np.nan)
    high = np.where(usable, effect.delta + half, np.nan)
    return low, high


def t_p_value(effect: Effect) -> np.ndarray:
    """Two-sided p-value for a zero effect; NaN where no inference is possible."""
    usable = _usable(effect)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = 2.0 * stats.t.sf(np.abs(effect.delta / effect.se), np.where(usable, effect.df, np.nan))
    return np.where(usable, p, np.nan)


def _welch_df(var_a, df_a, var_b, df_b):
    """Welch–Satterthwaite degrees of freedom of a sum of two independent variance terms."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (var_a + var_b) ** 2 / (var_a**2 / df_a + var_b**2 / df_b)


def _cochran_cox_quantile(var_a, df_a, var_b, df_b, tail: float):
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
    usable = _usable(target) & _usable(lab)
    var_t, var_l = target.se**2, (rho_min * lab.se) ** 2
    delta = target.delta - rho_min * lab.delta
    se = np.where(usable, np.sqrt(var_t + var_l), np.nan)
    q = _cochran_cox_quantile(var_t, target.df, var_l, lab.df, (1.0 - level) / 2.0)
    return Margin(delta, se, np.where(usable, delta + q * se, np.nan))


def fieller_interval(
    numerator: Effect, denominator: Effect, level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fieller set for the ratio of two independent effects (ρ = Δ_j / Δ_lab).

    The set is every ρ that the Welch test of a − ρb = 0 does not reject: |a − ρb| ≤
    q(df(ρ))·sqrt(se_a² + ρ²se_b²), with the Welch–Satterthwaite df taken at that very ρ (a
    plug-in df at ρ = a/b under-covered, 0.92, with 3 target seeds). The set is an interval when the denominator's own interval excludes 0, otherwise
    the complement of an interval (−∞, low] ∪ [high, ∞) or the whole line.

    Solved on the angle θ = arctan ρ, where ρ = ±∞ is an ordinary point: the set is the arc
    around θ̂ = arctan(a/b) on which h(θ) = (a·cosθ − b·sinθ)² − q²·(se_a²cos²θ + se_b²sin²θ)
    is ≤ 0; its ends are found by bisection from a grid point where h > 0.
    Returns (low, high, kind code into RHO_KINDS); infinite ends are ±inf, undefined ends NaN.
    """
    a, se_a, df_a = (np.asarray(x, dtype=float) for x in numerator)
    b, se_b, df_b = (np.asarray(x, dtype=float) for x in denominator)
    usable = _usable(numerator) & _usable(denominator)
    a, b = np.where(usable, a, 0.0), np.where(usable, b, 1.0)
    var_a, var_b = np.where(usable, se_a**2, 1.0), np.where(usable, se_b**2, 1.0)
    df_a, df_b = np.where(usable, df_a, 1.0), np.where(usable, df_b, 1.0)

    def h(theta: np.ndarray) -> np.ndarray:
        cos, sin = np.cos(theta), np.sin(theta)
        w_a, w_b = var_a[..., None] * cos**2, var_b[..., None] * sin**2
        df = _welch_df(w_a, df_a[..., None], w_b, df_b[..., None])
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


def fieller_covers(low: np.ndarray, high: np.ndarray, kind: np.ndarray, value) -> np.ndarray:
    """Whether a Fieller set (as returned by `fieller_interval`) contains `value`."""
    inside = (low <= value) & (value <= high)
    return np.select([kind == 1, kind == 2, kind == 3], [inside, ~inside, True], False)


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
    """The verdict rule of DESIGN.md §7, for arrays of studies (targets on the last axis).

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


# --------------------------------------------------------------------------------------------
# Power and seed counts
# --------------------------------------------------------------------------------------------
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
    df = _welch_df(var_n, n - 1.0, fixed_var, fixed_df) if fixed_var else n - 1.0
    critical = _cochran_cox_quantile(var_n, n - 1.0, fixed_var, fixed_df, tail)
    return float(stats.nct.sf(critical, df, effect / math.sqrt(var_n + fixed_var)))


def _seeds_for_test(
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
    n = _seeds_for_test(q.effect, q.sd, q.alpha / q.sides, q.power)
    if n is None:
        raise ValueError(f"more than {MAX_SEEDS} seeds needed for effect/sd = {effect / sd:.3g}")
    return n


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _TaskData:
    """A task reduced to PGR-unit effects, with what was dropped or doubtful said in words."""

    name: str
    paired: bool
    n: int
    n_baseline: int
    n_method: int
    denominator: float | None
    effect: Effect
    sd: float | None
    prob_improvement: float | None
    flags: list[str]
    reasons: list[str]


def _nan_effect(delta: float = math.nan) -> Effect:
    return Effect(np.array(delta), np.array(math.nan), np.array(math.nan))


def _prob_improvement(baseline: np.ndarray, method: np.ndarray, paired: bool) -> float | None:
    """Paired: share of seeds where the method beats the baseline; unpaired: P(method > baseline)
    over all cross pairs (the Mann–Whitney AUC). Ties count one half."""
    if paired:
        if baseline.size == 0:
            return None
        wins = np.sign(method - baseline)
    else:
        if baseline.size == 0 or method.size == 0:
            return None
        wins = np.sign(method[:, None] - baseline[None, :])
    return float(np.mean((wins + 1.0) / 2.0))


def _task_data(task: TaskSample) -> _TaskData:
    """PGR-unit effects of one task: (method − baseline) / mean(ceiling − weak)."""
    flags: list[str] = []
    reasons: list[str] = []

    def unusable(flag: str, reason: str) -> _TaskData:
        return _TaskData(
            task.name,
            task.paired,
            0,
            0,
            0,
            None,
            _nan_effect(),
            None,
            None,
            [*flags, flag],
            [*reasons, reason],
        )

    if not task.seeds:
        return unusable("insufficient_seeds", "no seeds")
    gaps = np.array([s.ceiling_acc - s.weak_acc for s in task.seeds])
    degenerate = [s.seed for s, gap in zip(task.seeds, gaps, strict=True) if gap <= 0]
    if degenerate:
        flags.append("degenerate_seed_gap")
        reasons.append(
            f"seeds {degenerate} have ceiling_acc <= weak_acc (PGR undefined for those seeds); "
            "they are kept because the effect uses the task's mean gap, but check those runs"
        )
    denominator = float(gaps.mean())
    if denominator <= 0:
        return unusable(
            "undefined_denominator",
            f"mean ceiling - weak gap is {denominator:.4g} <= 0: PGR units are undefined",
        )
    if task.paired:
        pairs = [s for s in task.seeds if s.baseline_acc is not None and s.method_acc is not None]
        lone = [s.seed for s in task.seeds if (s.baseline_acc is None) != (s.method_acc is None)]
        if lone:
            flags.append("unmatched_seeds_dropped")
            reasons.append(
                f"paired design but seeds {lone} have only one arm: unequal seed counts; the "
                f"paired analysis uses the {len(pairs)} seeds that have both"
            )
        baseline = np.array([s.baseline_acc for s in pairs]) / denominator
        method = np.array([s.method_acc for s in pairs]) / denominator
        effect = paired_effect(method - baseline)
        n, n_baseline, n_method = len(pairs), len(pairs), len(pairs)
        sd = float(np.std(method - baseline, ddof=1)) if n >= 2 else None
        enough = n >= 2
        raw = np.array([s.method_acc - s.baseline_acc for s in pairs])
        constant = enough and np.ptp(raw) <= SAME_ACCURACY
    else:
        baseline = np.array([s.baseline_acc for s in task.seeds if s.baseline_acc is not None])
        method = np.array([s.method_acc for s in task.seeds if s.method_acc is not None])
        baseline, method = baseline / denominator, method / denominator
        n_baseline, n_method = baseline.size, method.size
        n = sum(s.baseline_acc is not None or s.method_acc is not None for s in task.seeds)
        enough = min(n_baseline, n_method) >= 2
        effect = welch_effect(baseline, method) if min(n_baseline, n_method) else _nan_effect()
        sd = math.hypot(np.std(baseline, ddof=1), np.std(method, ddof=1)) if enough else None
        constant = enough and max(np.ptp(baseline), np.ptp(method)) * denominator <= SAME_ACCURACY
    if not enough:
        flags.append("insufficient_seeds")
        reasons.append(
            f"{n_baseline} baseline and {n_method} method runs usable: a t interval needs "
            "at least 2 per arm"
        )
    elif constant:
        effect, sd = Effect(effect.delta, np.array(0.0), effect.df), None
        flags.append("zero_variance")
        reasons.append(
            "the effect is identical on every seed (zero variance): a t interval is undefined; "
            "check that the method changes anything"
        )
    return _TaskData(
        name=task.name,
        paired=task.paired,
        n=n,
        n_baseline=n_baseline,
        n_method=n_method,
        denominator=denominator,
        effect=effect,
        sd=sd,
        prob_improvement=_prob_improvement(baseline, method, task.paired),
        flags=flags,
        reasons=reasons,
    )


def _num(value) -> float | None:
    """Plain Python float, or None for NaN/±inf (JSON and DuckDB friendly)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _lab_effect(
    data: _TaskData,
    decisions: Decisions,
    config: GapConfig,
    candidates: list[Candidate] | None,
    selected: str | None,
) -> LabEffect:
    flags, reasons = list(data.flags), list(data.reasons)
    ci_low, ci_high = t_interval(data.effect, DESCRIPTIVE_LEVEL)
    positive = bool(decisions.lab_positive[0])
    seeds = None
    if not positive:
        flags.append("no_lab_effect")
        low = _num(decisions.lab_low[0])
        reasons.append(
            "no lab effect to transfer: "
            + (
                "the lab effect could not be estimated"
                if low is None
                else f"its lower bound at level {decisions.level:.4g} is {low:.4g} <= 0"
            )
            + "; no target is judged (all inconclusive)"
        )
        delta = _num(data.effect.delta)
        if delta is not None and delta > 0 and data.sd:
            seeds = _seeds_for_test(delta, data.sd, (1 - decisions.level) / 2, config.power)
    winner = _winner(candidates, selected, flags, reasons)
    return LabEffect(
        **_estimate_fields(data),
        ci_low=_num(ci_low),
        ci_high=_num(ci_high),
        ci_adj_low=_num(decisions.lab_low[0]),
        ci_adj_high=_num(decisions.lab_high[0]),
        p_value=_num(t_p_value(data.effect)),
        positive=positive,
        seeds_needed=seeds,
        **winner,
        flags=flags,
        reasons=reasons,
    )


def _winner(
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
        "naive_ci_low": _num(naive_low),
        "naive_ci_high": _num(naive_high),
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
            "hybrid_estimate": _num(estimate),
            "hybrid_ci_low": _num(low),
            "hybrid_ci_high": _num(high),
        }
    return fields


def _seeds_to_decide(
    data: _TaskData, lab: Effect, config: GapConfig, level: float
) -> tuple[int | None, str]:
    """Target seeds that would give `config.power` to reach a verdict, taking the observed
    effects as the truth (a planning guide, not a promise); the smallest over the verdicts the
    estimates point to."""
    if not data.sd or not _usable(data.effect):
        return None, "no seed count can be computed without a per-seed SD"
    tail = (1.0 - level) / 2.0
    delta, floor = float(data.effect.delta), config.absolute_floor or 0.0
    margin = delta - config.rho_min * float(lab.delta)
    lab_var = float(config.rho_min * lab.se) ** 2
    counts = []
    if delta > floor:
        counts.append(_seeds_for_test(delta - floor, data.sd, tail, config.power))
    if margin < 0:
        counts.append(_seeds_for_test(-margin, data.sd, tail, config.power, lab_var, float(lab.df)))
    if config.absolute_floor is not None and delta < floor:
        counts.append(_seeds_for_test(floor - delta, data.sd, tail, config.power))
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


def _bayes_factor(target: Effect, lab: Effect) -> float | None:
    """log10 replication Bayes factor, normal approximation of Verhagen & Wagenmakers (2014):
    H_r: Δ_j ~ N(Δ_lab, se_lab²) (the lab posterior) against H_0: Δ_j = 0."""
    if not (_usable(target) and _usable(lab)):
        return None
    x, se_t = float(target.delta), float(target.se)
    log_bf = stats.norm.logpdf(x, float(lab.delta), math.hypot(se_t, float(lab.se)))
    log_bf -= stats.norm.logpdf(x, 0.0, se_t)
    return float(log_bf / math.log(10.0))


def _verdict_reasons(
    verdict: str, low, margin_upper, high, config: GapConfig, level: float
) -> tuple[list[str], list[str]]:
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


def _target_gap(
    j: int, data: _TaskData, lab: Effect, decisions: Decisions, config: GapConfig, p_holm
) -> TargetGap:
    flags, reasons = list(data.flags), list(data.reasons)
    verdict = VERDICTS[int(decisions.verdict[0, j])]
    low, high = float(decisions.low[0, j]), float(decisions.high[0, j])
    margin_upper = float(decisions.margin.upper[0, j])
    if not decisions.lab_positive[0]:
        flags.append("no_lab_effect")
        reasons.append("not judged: there is no lab effect to transfer (see the lab's reasons)")
    elif not _usable(data.effect):
        reasons.append("inconclusive: no interval for this target (see above)")
    else:
        verdict_flags, verdict_reasons = _verdict_reasons(
            verdict, low, margin_upper, high, config, decisions.level
        )
        flags += verdict_flags
        reasons += verdict_reasons
    seeds = None
    if verdict == "inconclusive" and decisions.lab_positive[0]:
        seeds, why = _seeds_to_decide(data, lab, config, decisions.level)
        reasons.append(why)
    ci95 = t_interval(data.effect, DESCRIPTIVE_LEVEL)
    rho_low, rho_high, rho_kind = fieller_interval(data.effect, lab, DESCRIPTIVE_LEVEL)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = data.effect.delta / lab.delta
    var_t, var_l = data.effect.se**2, lab.se**2  # Δ_j-hat − Δ_lab-hat if Δ_j = Δ_lab
    spread = Effect(
        lab.delta, np.sqrt(var_t + var_l), _welch_df(var_t, data.effect.df, var_l, lab.df)
    )
    prediction = t_interval(spread, DESCRIPTIVE_LEVEL)
    log10_bf = _bayes_factor(data.effect, lab)
    margin = decisions.margin
    return TargetGap(
        **_estimate_fields(data),
        ci95_low=_num(ci95[0]),
        ci95_high=_num(ci95[1]),
        ci_adj_low=_num(low),
        ci_adj_high=_num(high),
        p_value=_num(t_p_value(data.effect)),
        p_holm=p_holm,
        rho=_num(rho),
        rho_ci_low=_num(rho_low),
        rho_ci_high=_num(rho_high),
        rho_ci_kind=RHO_KINDS[int(rho_kind)],
        margin=_num(margin.delta[0, j]),
        margin_se=_num(margin.se[0, j]),
        margin_upper=_num(margin_upper),
        verdict=verdict,
        seeds_needed=seeds,
        prediction_low=_num(prediction[0]),
        prediction_high=_num(prediction[1]),
        bayes_factor=10.0**log10_bf if log10_bf is not None and abs(log10_bf) < 300 else None,
        log10_bayes_factor=log10_bf,
        prob_improvement=data.prob_improvement,
        flags=flags,
        reasons=reasons,
    )


def _holm(p_values: list[float | None], alpha: float) -> list[float | None]:
    """Holm-adjusted p-values; a target without a p-value counts as p = 1 (stays None)."""
    filled = [1.0 if p is None else p for p in p_values]
    adjusted = multipletests(filled, alpha=alpha, method="holm")[1]
    return [None if p is None else float(a) for p, a in zip(p_values, adjusted, strict=True)]


def _overall(
    targets: list[TargetGap], decisions: Decisions, lab_positive: bool
) -> tuple[str, list[str], list[str]]:
    verdict = VERDICTS[int(decisions.overall[0])]
    counts = {v: sum(t.verdict == v for t in targets) for v in VERDICTS}
    flags, reasons = [], []
    if not lab_positive:
        flags.append("no_lab_effect")
        reasons.append("no lab effect to transfer: nothing is judged, the verdict is inconclusive")
    if counts["replicated"] and counts["failed_to_replicate"]:
        flags.append("heterogeneous")
        reasons.append("targets disagree: some replicated, some failed to replicate")
    reasons.append(
        f"{counts['replicated']} of {len(targets)} targets replicated, "
        f"{counts['failed_to_replicate']} failed to replicate, {counts['inconclusive']} "
        f"inconclusive (intervals at level {decisions.level:.4g})"
    )
    return verdict, flags, reasons


def analyse_gap(
    lab: TaskSample,
    targets: list[TaskSample],
    config: GapConfig,
    candidates: list[Candidate] | None = None,
    selected: str | None = None,
) -> GapAnalysis:
    """Lab effect, per-target gaps, transfer ratios and verdicts for one study.

    `lab` holds the winner and the baseline on fresh seeds never used in the search. `candidates`
    (the leaderboard) and `selected` (default: the top mean) only feed the naive and hybrid
    figures reported beside the lab effect. Invalid input raises pydantic.ValidationError;
    degenerate data (few seeds, zero variance, undefined PGR) gives reasons, never NaN.
    """
    study = _StudyInput(
        lab=lab, targets=targets, config=config, candidates=candidates, selected=selected
    )
    config = study.config
    lab_data = _task_data(study.lab)
    target_data = [_task_data(t) for t in study.targets]
    target_effects = Effect(
        *(np.array([[float(getattr(d.effect, f)) for d in target_data]]) for f in Effect._fields)
    )
    lab_effect = Effect(*(np.array([float(x)]) for x in lab_data.effect))
    decisions = decide(
        lab_effect,
        target_effects,
        alpha=config.alpha,
        rho_min=config.rho_min,
        absolute_floor=config.absolute_floor,
    )
    lab_result = _lab_effect(lab_data, decisions, config, study.candidates, study.selected)
    p_holm = _holm([_num(t_p_value(d.effect)) for d in target_data], config.alpha)
    gaps = [
        _target_gap(j, d, lab_data.effect, decisions, config, p_holm[j])
        for j, d in enumerate(target_data)
    ]
    verdict, flags, reasons = _overall(gaps, decisions, lab_result.positive)
    return GapAnalysis(
        lab=lab_result,
        targets=gaps,
        overall_verdict=verdict,
        overall_flags=flags,
        overall_reasons=reasons,
        alpha=config.alpha,
        rho_min=config.rho_min,
        absolute_floor=config.absolute_floor,
        level=decisions.level,
    )
