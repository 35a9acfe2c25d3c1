"""Calibration suite for labgap.stats: simulated studies with known truth.

Every simulated study goes through `paired_effect` and `decide`, the functions `analyse_gap`
itself uses (the last test checks that on a few studies), vectorised over thousands of studies.
Effects are simulated directly in PGR units. Fixed RNG seeds make every figure deterministic.

Each check prints its figure with its Monte-Carlo standard error, records it with
`record_property` (junit XML) and repeats it in the assertion message. Before judging a rate,
each check also asserts that its threshold sits at least 3 Monte-Carlo SEs from the value
expected in theory, so a pass or fail is not a coin toss of the simulation.
"""

import math

import numpy as np
import pytest
from scipy import stats
from test_stats_decision import decide_fixed
from test_stats_intervals import fieller_covers

from labgap.stats.analysis import analyse_gap
from labgap.stats.decision import family_verdict
from labgap.stats.intervals import Effect, fieller_interval, paired_effect, t_interval
from labgap.stats.power import decision_power
from labgap.stats.schemas import (
    FAILED,
    REPLICATED,
    VERDICTS,
    Candidate,
    GapConfig,
    SearchBaseline,
    SeedResult,
    TaskSample,
)
from labgap.stats.winners import corrected_winner, hybrid_winner

ALPHA = 0.05
RHO_MIN = 0.5
N_NULL = 4000  # studies per configuration for the error rates (C1, C2)
N_COVER = 4000  # studies per coverage configuration (C3, C4): the issue asks for at least 2000;
# 4000 keeps 0.97 more than 3 MC SE from the ρ coverage with 3 seeds (≈0.957, see C3)
N_POWER = 4000  # studies for power and the hybrid interval (C4, C5)


def mc_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1.0 - rate) / n)


def check(
    record_property,
    name: str,
    rate: float,
    n: int,
    expected: float,
    low: float | None = None,
    high: float | None = None,
) -> None:
    """Print and record a simulated rate, then judge it against [low, high]."""
    design_se = mc_se(expected, n)
    bounds = [b for b in (low, high) if b is not None]
    limits = (
        f"[{'-inf' if low is None else f'{low:.4f}'}, {'inf' if high is None else f'{high:.4f}'}]"
    )
    line = (
        f"{name}: rate {rate:.4f} (MC SE {mc_se(rate, n):.4f}, {n} studies); "
        f"expected {expected:.4f}; required {limits}; "
        f"threshold distance {min(abs(b - expected) for b in bounds) / design_se:.1f} MC SE"
    )
    print(line)
    record_property(name, line)
    for bound in bounds:
        assert abs(bound - expected) >= 3 * design_se, f"too few simulations: {line}"
    assert (low is None or rate >= low) and (high is None or rate <= high), line


def noise(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Unit-variance noise: normal, or Student t with 3 df (heavy tails)."""
    if kind == "normal":
        return rng.standard_normal(shape)
    return rng.standard_t(3, shape) / math.sqrt(3.0)


def simulate(
    rng: np.random.Generator,
    studies: int,
    lab: tuple[int, float, float],
    n: int,
    target_deltas: list[float],
    kind: str = "normal",
) -> tuple[Effect, Effect]:
    """Paired per-seed effects: lab (n_lab, Δ_lab, sd_lab); J targets with n seeds, sd 1."""
    n_lab, delta_lab, sd_lab = lab
    lab_effect = paired_effect(delta_lab + sd_lab * noise(rng, (studies, n_lab), kind))
    deltas = np.asarray(target_deltas)[None, :, None]
    targets = paired_effect(deltas + noise(rng, (studies, len(target_deltas), n), kind))
    return lab_effect, targets


GRID = [(kind, j, n) for kind in ("normal", "t3") for j in (1, 2, 3) for n in (3, 5, 10)]


@pytest.mark.parametrize(("kind", "n_targets", "n"), GRID)
def test_c1_no_false_replication_under_the_null(record_property, kind, n_targets, n):
    """C1: Δ_j = 0 everywhere. The lab effect is real and precise (10 seeds, Δ 0.5, SD 0.1), so
    the failure rule rarely pre-empts a false `replicated`: the hardest case for this check."""
    rng = np.random.default_rng([1, n_targets, n, kind == "t3"])
    lab, targets = simulate(rng, N_NULL, (10, 0.5, 0.1), n, [0.0] * n_targets, kind)
    decisions = decide_fixed(lab, targets, alpha=ALPHA, rho_min=RHO_MIN)
    rate = float(np.mean((decisions.verdict == REPLICATED).any(axis=-1)))
    check(
        record_property,
        f"C1 {kind} J={n_targets} n={n} P(any false replicated)",
        rate,
        N_NULL,
        expected=ALPHA / 2,
        high=0.05,
    )


LAB_DESIGNS = {
    "precise lab (10 seeds, SD 0.5)": lambda n: (10, 2.0, 0.5),
    "matched lab (n seeds, SD 2)": lambda n: (n, 4.0, 2.0),
}


@pytest.mark.parametrize("lab_design", LAB_DESIGNS)
@pytest.mark.parametrize(("kind", "n_targets", "n"), GRID)
def test_c2_no_false_failure_at_the_margin(record_property, kind, n_targets, n, lab_design):
    """C2: every Δ_j sits exactly at ρ_min·Δ_lab. Two lab designs: a precise lab (the margin's
    variance is nearly all the target's) and one contributing as much variance as the target."""
    rng = np.random.default_rng(
        [2, n_targets, n, kind == "t3", list(LAB_DESIGNS).index(lab_design)]
    )
    lab_seeds, delta_lab, sd_lab = LAB_DESIGNS[lab_design](n)
    margin = RHO_MIN * delta_lab
    lab, targets = simulate(
        rng, N_NULL, (lab_seeds, delta_lab, sd_lab), n, [margin] * n_targets, kind
    )
    decisions = decide_fixed(lab, targets, alpha=ALPHA, rho_min=RHO_MIN)
    rate = float(np.mean((decisions.verdict == FAILED).any(axis=-1)))
    check(
        record_property,
        f"C2 {kind} J={n_targets} n={n} {lab_design} P(any failed)",
        rate,
        N_NULL,
        expected=ALPHA / 2,
        high=0.05,
    )


COVERAGE_DESIGNS = [
    *((n, lab) for n in (3, 5, 10) for lab in ((n, 2.0, 1.0), (n, 1.0, 1.0))),
    (5, (10, 2.0, 0.5)),
    (10, (10, 2.0, 0.5)),
]
"""(target seeds, (lab seeds, Δ_lab, lab SD)); target SD 1, true ρ = 0.5. ρ's coverage equals
the acceptance rate of the Welch test at the true ρ, which depends only on the variances: with 3
matched seeds it is ≈0.957 (200,000 studies), with more seeds ≈0.95. With 3 target seeds and a
much more precise lab it is ≈0.935: that corner is printed by the next test, not asserted."""


@pytest.mark.parametrize(("n", "lab_design"), COVERAGE_DESIGNS)
def test_c3_intervals_cover_the_truth(record_property, n, lab_design):
    """C3: 95% intervals for Δ_j (paired t) and for ρ (Fieller) cover the truth."""
    rng = np.random.default_rng([3, n, *(int(10 * x) for x in lab_design)])
    true_rho = 0.5
    delta_target = true_rho * lab_design[1]
    lab, targets = simulate(rng, N_COVER, lab_design, n, [delta_target])
    target = Effect(*(x[:, 0] for x in targets))
    low, high = t_interval(target, 0.95)
    delta_rate = float(np.mean((low <= delta_target) & (delta_target <= high)))
    rho_low, rho_high, rho_kind = fieller_interval(target, lab, 0.95)
    rho_rate = float(np.mean(fieller_covers(rho_low, rho_high, rho_kind, true_rho, target, lab)))
    name = f"C3 n={n} lab={lab_design}"
    check(record_property, f"{name} Δ coverage", delta_rate, N_COVER, 0.95, 0.93, 0.97)
    check(record_property, f"{name} ρ coverage", rho_rate, N_COVER, 0.95, 0.93, 0.97)


def test_c3_known_limit_is_printed(record_property):
    """3 target seeds, a lab far more precise: Welch–Satterthwaite at 2 df makes ρ's interval a
    little liberal (≈0.935). Printed so the figure stays visible; only a gross failure fails."""
    rng = np.random.default_rng(3999)
    lab, targets = simulate(rng, N_COVER, (10, 2.0, 0.5), 3, [1.0])
    target = Effect(*(x[:, 0] for x in targets))
    rate = float(np.mean(fieller_covers(*fieller_interval(target, lab, 0.95), 0.5, target, lab)))
    line = f"C3 known limit n=3 lab=(10, 2.0, 0.5) ρ coverage {rate:.4f} (MC SE "
    line += f"{mc_se(rate, N_COVER):.4f}); informative, not held to [0.93, 0.97]"
    print(line)
    record_property("C3 known limit", line)
    assert rate > 0.9, line


def leaderboard(rng: np.random.Generator, studies: int, candidates: int):
    """Many candidates with equal true means (0) and SE 1: the winner is pure luck."""
    means = rng.standard_normal((studies, candidates))
    order = np.sort(means, axis=-1)
    return order[:, -1], order[:, -2]


def test_c4_naive_winner_interval_under_covers(record_property):
    """C4, negative control: the selected candidate's own interval (leaderboard mean ± t·SE,
    16 seeds) ignores selection among 50 candidates and must fail to cover."""
    candidates, seeds = 50, 16
    winner, _ = leaderboard(np.random.default_rng(4000), N_COVER, candidates)
    naive = Effect(winner, np.ones(N_COVER), np.full(N_COVER, seeds - 1.0))
    low, high = t_interval(naive, 0.95)
    rate = float(np.mean((low <= 0) & (high >= 0)))
    q = stats.t.ppf(0.975, seeds - 1)
    expected = stats.norm.cdf(q) ** candidates - stats.norm.cdf(-q) ** candidates
    check(record_property, "C4 naive winner coverage", rate, N_COVER, expected, high=0.90)


def test_c4_hybrid_winner_interval_covers(record_property):
    """Positive control for C4: the hybrid interval (Andrews, Kitagawa & McCloskey) on the same
    kind of leaderboard covers, and its estimate is median-unbiased."""
    winner, runner_up = leaderboard(np.random.default_rng(4001), N_POWER, 50)
    estimate, low, high = hybrid_winner(winner, np.ones(N_POWER), runner_up, 50)
    coverage = float(np.mean((low <= 0) & (high >= 0)))
    check(record_property, "C4 hybrid winner coverage", coverage, N_POWER, 0.95, 0.93, 0.97)
    above = float(np.mean(estimate > 0))
    check(record_property, "C4 hybrid P(estimate > truth)", above, N_POWER, 0.5, 0.45, 0.55)


def search_leaderboard(rng: np.random.Generator, candidates: int, seeds: int):
    """A search as the pipeline runs it: every candidate and the baseline on `seeds` seeds, all
    with the same true dev PGR (per-seed SD 1), effects = candidate mean − baseline mean.
    Returns per-study (winner effect, runner-up effect, winner's own SE, pooled variance, df)."""
    runs = rng.standard_normal((N_POWER, candidates + 1, seeds))
    means, variances = runs.mean(-1), runs.var(-1, ddof=1)
    effects = np.sort(means[:, 1:] - means[:, :1], axis=-1)
    winner = np.argmax(means[:, 1:], axis=-1) + 1
    own_se = np.sqrt(variances[np.arange(N_POWER), winner] / seeds)
    df = (candidates + 1) * (seeds - 1)
    return effects[:, -1], effects[:, -2], own_se, variances.mean(-1), df


@pytest.mark.parametrize("candidates", [3, 12])
@pytest.mark.parametrize("seeds", [2, 3])
def test_c4_hybrid_winner_with_estimated_se(record_property, seeds, candidates):
    """C4 as the search reports it: SEs estimated from 2 or 3 search seeds. Each candidate's own
    SE (the old input) under-covers; the pooled SE with the baseline's variance covers and keeps
    the estimate median-unbiased."""
    rng = np.random.default_rng([4002, seeds, candidates])
    winner, runner_up, own_se, variance, df = search_leaderboard(rng, candidates, seeds)
    name = f"C4 hybrid {seeds} seeds, {candidates} candidates"
    _, low, high = hybrid_winner(winner, own_se, runner_up, candidates)
    own = float(np.mean((low <= 0) & (high >= 0)))
    line = (
        f"{name}, own SE (negative control): coverage {own:.4f} (MC SE {mc_se(own, N_POWER):.4f})"
    )
    print(line)
    record_property(f"{name} own SE", line)
    assert own < 0.90, line
    estimate, low, high = corrected_winner(
        winner, runner_up, variance, seeds, seeds, candidates, df
    )
    coverage = float(np.mean((low <= 0) & (high >= 0)))
    check(record_property, f"{name} pooled coverage", coverage, N_POWER, 0.95, 0.93, 0.97)
    above = float(np.mean(estimate > 0))
    check(record_property, f"{name} pooled P(estimate > truth)", above, N_POWER, 0.5, 0.45, 0.55)


def test_c4_hybrid_simulated_path_is_the_public_path():
    """analyse_gap's hybrid figure, from candidates and the baseline as `stages.analyse` passes
    them, equals the vectorised path above on the same leaderboards."""
    rng = np.random.default_rng(4003)
    lab = seed_level_task(rng, "lab", 0.3)
    for _ in range(5):
        runs = rng.standard_normal((4, 2))
        means, ses = runs.mean(-1), runs.std(-1, ddof=1) / math.sqrt(2)
        candidates = [
            Candidate(name=f"m{k}", mean=means[k] - means[0], se=ses[k], n=2) for k in (1, 2, 3)
        ]
        baseline = SearchBaseline(n=2, se=ses[0])
        result = analyse_gap(lab, [lab], GapConfig(), candidates=candidates, baseline=baseline)
        effects = np.sort(means[1:] - means[0])
        expected = corrected_winner(
            effects[-1], effects[-2], runs.var(-1, ddof=1).mean(), 2, 2, 3, 4
        )
        assert (
            result.lab.hybrid_estimate,
            result.lab.hybrid_ci_low,
            result.lab.hybrid_ci_high,
        ) == pytest.approx(tuple(float(x) for x in expected))


def test_c5_power_to_replicate(record_property):
    """C5a: d = 1 on 12 paired seeds, J = 1, full transfer; the lab effect is established
    (12 fresh seeds, Δ 1, SD 0.5)."""
    lab, targets = simulate(np.random.default_rng(5000), N_POWER, (12, 1.0, 0.5), 12, [1.0])
    decisions = decide_fixed(lab, targets, alpha=ALPHA, rho_min=RHO_MIN)
    rate = float(np.mean(decisions.verdict == REPLICATED))
    expected = decision_power(1.0, 1.0, 12, ALPHA / 2)
    check(record_property, "C5a P(replicated) d=1 n=12 J=1", rate, N_POWER, expected, low=0.80)


@pytest.mark.parametrize("n", [12, 14])
def test_c5_power_to_fail(record_property, n):
    """C5b: Δ_j = 0, margin ρ_min·Δ_lab = 1 target SD, J = 2 (lab: 12 seeds, Δ 2, SD 0.5);
    power is per target. With 12 seeds even an exact t test at α/(2J) has only 0.79 power, so
    12 seeds are held to the module's own power prediction and 14 seeds to ≥ 0.80."""
    lab, targets = simulate(np.random.default_rng(5100 + n), N_POWER, (12, 2.0, 0.5), n, [0.0, 0.0])
    decisions = decide_fixed(lab, targets, alpha=ALPHA, rho_min=RHO_MIN)
    rate = float(np.mean(decisions.verdict == FAILED))
    studies = N_POWER  # both targets counted, but they share a lab: SE as if one per study
    lab_share = (RHO_MIN * 0.5) ** 2 / 12
    expected = decision_power(1.0, 1.0, n, ALPHA / 4, lab_share, 11.0)
    name = f"C5b P(failed) per target, Δ=0, margin 1 SD, n={n}, J=2"
    if n == 14:
        check(record_property, name, rate, studies, expected, low=0.80)
    else:
        spread = 3 * mc_se(expected, studies)
        check(
            record_property,
            name,
            rate,
            studies,
            expected,
            expected - spread - 0.01,
            expected + spread + 0.01,
        )


WEAK, CEILING = 0.55, 0.75


def seed_level_task(rng: np.random.Generator, name: str, effect: float, n: int = 5) -> TaskSample:
    """A task as the pipeline reports it: accuracies per seed, effect given in PGR units."""
    baseline = rng.uniform(0.6, 0.7, n)
    noise_acc = 0.03 * rng.standard_normal(n)
    method = np.clip(baseline + effect * (CEILING - WEAK) + noise_acc, 0.0, 1.0)
    seeds = [
        SeedResult(seed=i, weak_acc=WEAK, ceiling_acc=CEILING, baseline_acc=b, method_acc=m)
        for i, (b, m) in enumerate(zip(baseline.tolist(), method.tolist(), strict=True))
    ]
    return TaskSample(name=name, seeds=seeds)


def pgr_effects(task: TaskSample) -> np.ndarray:
    return np.array([(s.method_acc - s.baseline_acc) / (CEILING - WEAK) for s in task.seeds])


def test_the_simulated_path_is_the_public_path():
    """analyse_gap on seed-level accuracies reaches the verdicts `decide` gives on the same
    studies' PGR effects, so the suite above calibrates what users get."""
    rng = np.random.default_rng(6000)
    for _ in range(20):
        lab = seed_level_task(rng, "lab", 0.3)
        targets = [seed_level_task(rng, name, rng.uniform(0.0, 0.3)) for name in ("a", "b")]
        result = analyse_gap(lab, targets, GapConfig())
        decisions = decide_fixed(
            paired_effect(pgr_effects(lab)[None, :]),
            paired_effect(np.stack([pgr_effects(t) for t in targets])[None]),
            alpha=ALPHA,
            rho_min=RHO_MIN,
        )
        assert [t.verdict for t in result.targets] == [VERDICTS[v] for v in decisions.verdict[0]]
        verdict = family_verdict(decisions.verdict)[0]
        assert result.headline("production").verdict == VERDICTS[int(verdict)]
