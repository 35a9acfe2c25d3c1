"""Lab-versus-production gap analysis of one study.

Puts the pieces together: task effects (samples), the verdict rule (decision), the leaderboard
figures (winners), seed counts (power) and the side figures that never decide (Holm, transfer
ratio, prediction interval, Bayes factor). Pure Python + numpy/scipy/statsmodels: no Prefect
imports, so tasks stay thin wrappers.
"""

import math
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, Field, model_validator
from scipy import stats
from statsmodels.stats.multitest import multipletests

from labgap.stats.decision import Decisions, decide, verdict_reasons
from labgap.stats.intervals import (
    Effect,
    fieller_interval,
    is_usable,
    t_interval,
    t_p_value,
    welch_df,
)
from labgap.stats.power import seeds_for_test, seeds_to_decide
from labgap.stats.samples import TaskData, task_data
from labgap.stats.schemas import (
    DESCRIPTIVE_LEVEL,
    RHO_KINDS,
    VERDICTS,
    Candidate,
    GapAnalysis,
    GapConfig,
    KnownComparison,
    LabEffect,
    SearchBaseline,
    TargetGap,
    TaskSample,
    num,
)
from labgap.stats.winners import winner_fields


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
    baseline: SearchBaseline | None = None

    @model_validator(mode="after")
    def _selected_is_a_candidate(self) -> "_StudyInput":
        if self.selected is None:
            return self
        if self.candidates is None:
            raise ValueError("selected: given without candidates")
        if self.selected not in {c.name for c in self.candidates}:
            raise ValueError(f"selected: {self.selected!r} is not among the candidates")
        return self


def _estimate_fields(data) -> dict:
    """The `EffectEstimate` fields of a lab or target sample."""
    return {
        "name": data.name,
        "paired": data.paired,
        "n": data.n,
        "n_baseline": data.n_baseline,
        "n_method": data.n_method,
        "denominator": data.denominator,
        "delta": num(data.effect.delta),
        "se": num(data.effect.se),
        "df": num(data.effect.df),
    }


def _lab_effect(
    data: TaskData,
    decisions: Decisions,
    config: GapConfig,
    candidates: list[Candidate] | None,
    selected: str | None,
    baseline: SearchBaseline | None,
) -> LabEffect:
    flags, reasons = list(data.flags), list(data.reasons)
    ci_low, ci_high = t_interval(data.effect, DESCRIPTIVE_LEVEL)
    positive = bool(decisions.lab_positive[0])
    seeds = None
    if not positive:
        flags.append("no_lab_effect")
        low = num(decisions.lab_low[0])
        reasons.append(
            "no lab effect to transfer: "
            + (
                "the lab effect could not be estimated"
                if low is None
                else f"its lower bound at level {decisions.level:.4g} is {low:.4g} <= 0"
            )
            + "; no target is judged (all inconclusive)"
        )
        delta = num(data.effect.delta)
        if delta is not None and delta > 0 and data.sd:
            seeds = seeds_for_test(delta, data.sd, (1 - decisions.level) / 2, config.power)
    winner = winner_fields(candidates, selected, baseline, flags, reasons)
    return LabEffect(
        **_estimate_fields(data),
        ci_low=num(ci_low),
        ci_high=num(ci_high),
        ci_adj_low=num(decisions.lab_low[0]),
        ci_adj_high=num(decisions.lab_high[0]),
        p_value=num(t_p_value(data.effect)),
        positive=positive,
        seeds_needed=seeds,
        **winner,
        flags=flags,
        reasons=reasons,
    )


def _bayes_factor(target: Effect, lab: Effect) -> float | None:
    """log10 replication Bayes factor, normal approximation of Verhagen & Wagenmakers (2014):
    H_r: Δ_j ~ N(Δ_lab, se_lab²) (the lab posterior) against H_0: Δ_j = 0."""
    if not (is_usable(target) and is_usable(lab)):
        return None
    x, se_t = float(target.delta), float(target.se)
    log_bf = stats.norm.logpdf(x, float(lab.delta), math.hypot(se_t, float(lab.se)))
    log_bf -= stats.norm.logpdf(x, 0.0, se_t)
    return float(log_bf / math.log(10.0))


def _target_gap(
    j: int, data: TaskData, lab: Effect, decisions: Decisions, config: GapConfig, p_holm
) -> TargetGap:
    flags, reasons = list(data.flags), list(data.reasons)
    verdict = VERDICTS[int(decisions.verdict[0, j])]
    low, high = float(decisions.low[0, j]), float(decisions.high[0, j])
    margin_upper = float(decisions.margin.upper[0, j])
    if not decisions.lab_positive[0]:
        flags.append("no_lab_effect")
        reasons.append("not judged: there is no lab effect to transfer (see the lab's reasons)")
    elif not is_usable(data.effect):
        reasons.append("inconclusive: no interval for this target (see above)")
    else:
        extra_flags, extra_reasons = verdict_reasons(
            verdict, low, margin_upper, high, config, decisions.level
        )
        flags += extra_flags
        reasons += extra_reasons
    seeds = None
    if verdict == "inconclusive" and decisions.lab_positive[0]:
        seeds, why = seeds_to_decide(data, lab, config, decisions.level)
        reasons.append(why)
    ci95 = t_interval(data.effect, DESCRIPTIVE_LEVEL)
    rho_low, rho_high, rho_kind = fieller_interval(data.effect, lab, DESCRIPTIVE_LEVEL)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = data.effect.delta / lab.delta
    var_t, var_l = data.effect.se**2, lab.se**2  # Δ_j-hat − Δ_lab-hat if Δ_j = Δ_lab
    spread = Effect(
        lab.delta, np.sqrt(var_t + var_l), welch_df(var_t, data.effect.df, var_l, lab.df)
    )
    prediction = t_interval(spread, DESCRIPTIVE_LEVEL)
    log10_bf = _bayes_factor(data.effect, lab)
    margin = decisions.margin
    return TargetGap(
        **_estimate_fields(data),
        ci95_low=num(ci95[0]),
        ci95_high=num(ci95[1]),
        ci_adj_low=num(low),
        ci_adj_high=num(high),
        p_value=num(t_p_value(data.effect)),
        p_holm=p_holm,
        rho=num(rho),
        rho_ci_low=num(rho_low),
        rho_ci_high=num(rho_high),
        rho_ci_kind=RHO_KINDS[int(rho_kind)],
        margin=num(margin.delta[0, j]),
        margin_se=num(margin.se[0, j]),
        margin_upper=num(margin_upper),
        verdict=verdict,
        seeds_needed=seeds,
        prediction_low=num(prediction[0]),
        prediction_high=num(prediction[1]),
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
    baseline: SearchBaseline | None = None,
) -> GapAnalysis:
    """Lab effect, per-target gaps, transfer ratios and verdicts for one study.

    `lab` holds the winner and the baseline on fresh seeds never used in the search. `candidates`
    (the leaderboard) and `selected` (default: the top mean) only feed the naive and hybrid
    figures reported beside the lab effect; `baseline` (its search-seed count and SE) is needed
    for the hybrid one. Invalid input raises pydantic.ValidationError;
    degenerate data (few seeds, zero variance, undefined PGR) gives reasons, never NaN.
    """
    study = _StudyInput(
        lab=lab,
        targets=targets,
        config=config,
        candidates=candidates,
        selected=selected,
        baseline=baseline,
    )
    config = study.config
    lab_data = task_data(study.lab)
    target_data = [task_data(t) for t in study.targets]
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
    lab_result = _lab_effect(
        lab_data, decisions, config, study.candidates, study.selected, study.baseline
    )
    p_holm = _holm([num(t_p_value(d.effect)) for d in target_data], config.alpha)
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


def effect_estimate(task: TaskSample) -> float | None:
    """The PGR-unit effect point estimate of one task: exactly the `delta` that `analyse_gap`
    reports for that task as its lab effect, None when it cannot be estimated. The reward-hacking
    check uses it on the fresh-seed confirmation, which needs the estimate without a study."""
    return num(task_data(task).effect.delta)


def compare_with_known(sample: TaskSample, known: str, known_hash: str) -> KnownComparison:
    """The winner minus the known-methods baseline (the sample's baseline arm) in PGR units, with
    the paired 95% t-interval the lab effect reports too. One comparison, chosen before any
    fresh seed ran (the known baseline is picked on the search seeds), so no multiplicity."""
    data = task_data(sample)
    low, high = t_interval(data.effect, DESCRIPTIVE_LEVEL)
    low, high, delta = num(low), num(high), num(data.effect.delta)
    if low is not None and low > 0:
        verdict, reason = "better", f"the winner beats {known}: 95% interval above 0"
    elif high is not None and high < 0:
        verdict, reason = "worse", f"{known} beats the winner: 95% interval below 0"
    elif delta is None:
        verdict, reason = "no_clear_difference", "the difference could not be estimated"
    else:
        verdict, reason = "no_clear_difference", f"the 95% interval includes 0 ({known})"
    return KnownComparison(
        **_estimate_fields(data),
        known=known,
        known_hash=known_hash,
        ci_low=low,
        ci_high=high,
        p_value=num(t_p_value(data.effect)),
        verdict=verdict,
        reason=reason,
    )
