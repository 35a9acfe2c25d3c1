"""Inputs, outputs and constants of the gap analysis.

Kept apart from the arithmetic so that callers storing or reporting results, and the modules
computing them, share one definition of every field, verdict and level.
"""

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from labgap.stats.sequential import Design, Schedule, StopReason

INCONCLUSIVE, REPLICATED, FAILED = 0, 1, 2
VERDICTS = ("inconclusive", "replicated", "failed_to_replicate")
"""Verdict names, indexed by the integer codes `decide` returns."""

RHO_KINDS = ("undefined", "bounded", "complement", "unbounded", "union")
"""Shapes of a Fieller set, indexed by the codes `fieller_interval` returns."""

Verdict = Literal["replicated", "failed_to_replicate", "inconclusive"]
Role = Literal["heldout", "production"]

QUESTIONS: dict[str, str] = {"heldout": "generalisation", "production": "production"}
"""The headline question each target role answers: generalisation (held-out tasks, other data)
and production transfer (production targets). Each is its own family of verdicts."""
RhoKind = Literal["undefined", "bounded", "complement", "unbounded", "union"]

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
    role: Role = "production"
    look: Annotated[int, Field(ge=1)] = 1
    stop_reason: StopReason | None = None


class Candidate(BaseModel):
    """One leaderboard entry: mean dev effect (PGR units, same scale as the lab effect) and SE."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1)]
    mean: Finite
    se: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    n: Annotated[int, Field(ge=1)]


class SearchBaseline(BaseModel):
    """The baseline's dev PGR over the search seeds (SE None with one seed): every candidate's
    mean is taken relative to it, so the winner's corrected figure needs its spread too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: Annotated[int, Field(ge=1)]
    se: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _se_with_two_seeds(self) -> "SearchBaseline":
        if self.n >= 2 and self.se is None:
            raise ValueError("se: required with two or more seeds")
        return self


class GapConfig(BaseModel):
    """Pre-registered settings of the gap analysis."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.05
    rho_min: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    absolute_floor: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None
    power: Probability = 0.8
    design: Design = "fixed"
    schedule: Schedule | None = None

    @model_validator(mode="after")
    def _schedule_with_sequential(self) -> "GapConfig":
        if self.design == "sequential" and self.schedule is None:
            raise ValueError("schedule: required with the sequential design")
        return self


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------
def num(value) -> float | None:
    """Plain Python float, or None for NaN/±inf (JSON and DuckDB friendly)."""
    value = float(value)
    return value if math.isfinite(value) else None


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
    look: int = 1
    stop_reason: StopReason | None = None
    ci_level: float = DESCRIPTIVE_LEVEL
    """Nominal level of the reported 95% interval: above 0.95 at a sequential look (a wider
    interval), so that the intervals of all planned looks cover together with probability 0.95."""


class LabEffect(EffectEstimate):
    """The lab effect on fresh seeds, with the naive (selected) leaderboard figure beside it."""

    ci_low: float | None
    ci_high: float | None
    ci_adj_low: float | None
    ci_adj_high: float | None
    p_value: float | None
    positive: bool
    negative: bool = False
    level: float
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
    rho_ci_set: str | None = None
    margin: float | None
    margin_se: float | None
    margin_upper: float | None
    verdict: Verdict
    role: Role
    level: float
    seeds_needed: int | None
    prediction_low: float | None
    prediction_high: float | None
    bayes_factor: float | None
    log10_bayes_factor: float | None
    prob_improvement: float | None
    flags: list[str]
    reasons: list[str]


class KnownComparison(EffectEstimate):
    """The lab winner against the known-methods baseline on the same fresh lab seeds: did the
    agents find something better than the methods a careful human would have tuned?"""

    known: str
    known_hash: str
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    verdict: Literal["better", "worse", "no_clear_difference", "same_method"]
    reason: str


class Headline(BaseModel):
    """One headline question's verdict over its family of targets."""

    model_config = ConfigDict(frozen=True)

    question: Literal["generalisation", "production"]
    role: Role
    verdict: Verdict
    targets: list[str]
    alpha_per_target: float
    flags: list[str]
    reasons: list[str]


class GapAnalysis(BaseModel):
    """Everything the report and DuckDB need; all numbers are plain floats or None."""

    model_config = ConfigDict(frozen=True)

    lab: LabEffect
    targets: list[TargetGap]
    headlines: list[Headline]
    overall_verdict: Verdict
    overall_flags: list[str]
    overall_reasons: list[str]
    alpha: float
    rho_min: float
    absolute_floor: float | None
    design: Design = "fixed"
    schedule: Schedule | None = None

    def headline(self, question: str) -> Headline | None:
        return next((h for h in self.headlines if h.question == question), None)

    versus_known: KnownComparison | None = None
