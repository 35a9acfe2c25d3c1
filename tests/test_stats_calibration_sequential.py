"""Calibration of the sequential design, stopping rule included.

Simulated studies run look by look through `decide`, `next_looks` and `look_level`, the
functions the study's replication stage uses: the lab gets seeds until it is established or
refuted, then every undecided target gets a batch per look until decided or at its cap. Each
figure prints with its Monte-Carlo SE (see `check`), and the last test prints the figure that
justifies the design: expected seeds per decided target against the fixed design that reaches
the same power at the same error rates.
"""

import numpy as np
import pytest
from test_stats_calibration import check, noise

from labgap.stats.decision import decide, next_looks
from labgap.stats.intervals import Effect, t_interval
from labgap.stats.power import decision_power
from labgap.stats.schemas import FAILED, INCONCLUSIVE, REPLICATED
from labgap.stats.sequential import Schedule, look_level

ALPHA = 0.05
RHO_MIN = 0.5
STUDIES = 4000
SCHEDULES = {
    "quick": Schedule(start=4, batch=4, cap=16),
    "default": Schedule(start=6, batch=4, cap=18),
}


def prefix_effects(values: np.ndarray, seeds: np.ndarray) -> Effect:
    """Paired t summaries of the first `seeds` values on the last axis (seeds per study)."""
    total = np.cumsum(values, axis=-1)
    squares = np.cumsum(values**2, axis=-1)
    index = (seeds - 1)[..., None]
    sums = np.take_along_axis(total, index, axis=-1)[..., 0]
    sum_squares = np.take_along_axis(squares, index, axis=-1)[..., 0]
    mean = sums / seeds
    variance = np.maximum(sum_squares - seeds * mean**2, 0.0) / (seeds - 1)
    return Effect(mean, np.sqrt(variance / seeds), seeds - 1.0)


class Outcome:
    """A simulated batch of studies after the stopping rule ended every one of them."""

    def __init__(self, schedule, decisions, lab_look, looks, targets, target_seeds):
        self.decisions, self.lab_look, self.looks = decisions, lab_look, looks
        sizes = np.array(schedule.sizes)
        self.lab_seeds, self.seeds = sizes[lab_look - 1], sizes[looks - 1]
        shown = np.vectorize(lambda k: look_level("sequential", schedule, ALPHA, k))(looks)
        self.ci95 = t_interval(targets, shown)
        self.judged = decisions.lab_positive[..., None] & np.ones_like(looks, dtype=bool)
        self.target_seeds = target_seeds


def run_design(
    rng: np.random.Generator,
    schedule: Schedule,
    lab: tuple[float, float],
    target_deltas: list[float],
    kind: str = "normal",
    design: str = "sequential",
) -> Outcome:
    """Studies with per-seed effects: lab (Δ_lab, SD), J targets of one family with SD 1."""
    n_targets, cap = len(target_deltas), schedule.cap
    lab_values = lab[0] + lab[1] * noise(rng, (STUDIES, cap), kind)
    deltas = np.asarray(target_deltas)[None, :, None]
    target_values = deltas + noise(rng, (STUDIES, n_targets, cap), kind)
    sizes, n_looks = np.array(schedule.sizes), len(schedule.sizes)
    lab_look = np.ones(STUDIES, dtype=int)
    looks = np.ones((STUDIES, n_targets), dtype=int)
    while True:
        lab_effect = prefix_effects(lab_values, sizes[lab_look - 1])
        targets = prefix_effects(target_values, sizes[looks - 1])
        lab_level = np.vectorize(lambda k: look_level(design, schedule, ALPHA, k))(lab_look)
        levels = np.vectorize(lambda k: look_level(design, schedule, ALPHA / n_targets, k))(looks)
        decisions = decide(lab_effect, targets, lab_level=lab_level, levels=levels, rho_min=RHO_MIN)
        lab_more, targets_more = next_looks(
            decisions.lab_positive,
            decisions.lab_negative,
            decisions.verdict,
            lab_look,
            looks,
            n_looks,
        )
        if design == "fixed" or not (lab_more.any() or targets_more.any()):
            return Outcome(schedule, decisions, lab_look, looks, targets, sizes[looks - 1])
        lab_look = lab_look + lab_more
        looks = looks + targets_more


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n_targets", [1, 2])
@pytest.mark.parametrize("kind", ["normal", "t3"])
def test_s1_no_false_replication(record_property, schedule, n_targets, kind):
    """S1: every Δ_j = 0 with a real, precise lab effect (Δ 0.5, SD 0.1): any target claimed
    `replicated` is a false claim; family-wise at most α/2 in theory."""
    rng = np.random.default_rng([11, n_targets, kind == "t3", list(SCHEDULES).index(schedule)])
    outcome = run_design(rng, SCHEDULES[schedule], (0.5, 0.1), [0.0] * n_targets, kind)
    rate = float(np.mean((outcome.decisions.verdict == REPLICATED).any(axis=-1)))
    name = f"S1 {schedule} {kind} J={n_targets} P(any false replicated)"
    check(record_property, name, rate, STUDIES, expected=ALPHA / 2, high=0.05)


LAB_DESIGNS = {"precise lab (Δ 2, SD 0.5)": (2.0, 0.5), "noisy lab (Δ 2, SD 2)": (2.0, 2.0)}


@pytest.mark.parametrize("lab_design", LAB_DESIGNS)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("n_targets", [1, 2])
def test_s2_no_false_failure_at_the_margin(record_property, lab_design, schedule, n_targets):
    """S2: every Δ_j sits exactly at ρ_min·Δ_lab. With the noisy lab, the lab itself stops at a
    data-dependent look (upward-selected when it stops early): the hard case for the margin."""
    lab = LAB_DESIGNS[lab_design]
    rng = np.random.default_rng(
        [12, n_targets, list(SCHEDULES).index(schedule), list(LAB_DESIGNS).index(lab_design)]
    )
    margin = RHO_MIN * lab[0]
    outcome = run_design(rng, SCHEDULES[schedule], lab, [margin] * n_targets)
    rate = float(np.mean((outcome.decisions.verdict == FAILED).any(axis=-1)))
    name = f"S2 {schedule} {lab_design} J={n_targets} P(any false failed)"
    check(record_property, name, rate, STUDIES, expected=ALPHA / 2, high=0.05)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("delta", [0.0, 0.5, 1.0])
def test_s3_interval_at_stopping_covers(record_property, schedule, delta):
    """S3: the 95% interval reported at stopping is the repeated interval at the stopping look:
    it covers Δ_j with probability ≥ 0.95 whatever the stopping rule (anytime-valid over the
    planned looks). Judged only where the target was judged (lab established)."""
    rng = np.random.default_rng([13, int(10 * delta), list(SCHEDULES).index(schedule)])
    outcome = run_design(rng, SCHEDULES[schedule], (1.0, 0.5), [delta])
    low, high = outcome.ci95
    covered = ((low <= delta) & (delta <= high))[outcome.judged]
    rate = float(np.mean(covered))
    name = f"S3 {schedule} Δ={delta} coverage at stopping"
    check(record_property, name, rate, covered.size, expected=0.97, low=0.95)


def fixed_power(delta: float, n: int, n_targets: int) -> float:
    """Power of the fixed design's `replicated` test on n seeds (SD 1), exact."""
    return decision_power(delta, 1.0, n, ALPHA / n_targets / 2)


def seeds_per_decision(outcome: Outcome) -> tuple[float, float]:
    """(P(decided), seeds spent per decided target) over the targets that were judged."""
    decided = (outcome.decisions.verdict != INCONCLUSIVE)[outcome.judged]
    spent = outcome.seeds[outcome.judged].sum()
    return float(decided.mean()), float(spent / max(1, decided.sum()))


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_s4_power_and_seeds_per_decision(record_property, schedule):
    """S4: full transfer of a real effect (Δ_j = Δ_lab, J = 2). The sequential design must
    replicate with power ≥ 0.8 at 1 per-seed SD within its cap, and the figure of merit is
    printed for several effects: seeds spent per decided target, sequential against the fixed
    design with the same power at the same α, and against the fixed design at the cap."""
    plan = SCHEDULES[schedule]
    lines = []
    for effect in (0.7, 1.0, 1.5):
        rng = np.random.default_rng([14, list(SCHEDULES).index(schedule), int(10 * effect)])
        outcome = run_design(rng, plan, (effect, 0.5), [effect, effect])
        power, per_decision = seeds_per_decision(outcome)
        fixed_n = next(n for n in range(2, 400) if fixed_power(effect, n, 2) >= power)
        at_cap = plan.cap / fixed_power(effect, plan.cap, 2)
        lines.append(
            f"S4 {schedule} Δ = {effect} SD: sequential P(decided) {power:.3f}, "
            f"{per_decision:.2f} seeds per decided target; fixed n = {fixed_n} for that power "
            f"({fixed_n / power:.2f} per decided target, ratio {per_decision * power / fixed_n:.2f}"
            f"); fixed at the cap {at_cap:.2f}"
        )
        if effect == 1.0:
            check(record_property, f"S4 {schedule} power Δ=1", power, 2 * STUDIES, 0.88, 0.8)
            assert per_decision < fixed_n / power, lines[-1]
    for line in lines:
        print(line)
        record_property(line.split(":")[0], line)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("kind", ["normal", "t3"])
def test_s5_no_false_lab_effect(record_property, schedule, kind):
    """S5: no lab effect (Δ_lab = 0): the lab gets seeds look after look until its cap, and
    a lab effect claimed on the way is false; at most α/2 in theory."""
    rng = np.random.default_rng([15, kind == "t3", list(SCHEDULES).index(schedule)])
    outcome = run_design(rng, SCHEDULES[schedule], (0.0, 1.0), [0.0], kind)
    rate = float(np.mean(outcome.decisions.lab_positive))
    name = f"S5 {schedule} {kind} P(false lab effect)"
    check(record_property, name, rate, STUDIES, expected=ALPHA / 2, high=0.05)
    reached_cap = float(np.mean(outcome.lab_seeds == SCHEDULES[schedule].cap))
    assert reached_cap > 0.9, f"{name}: only {reached_cap:.3f} of null labs ran to the cap"
