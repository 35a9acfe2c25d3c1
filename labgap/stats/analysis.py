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

from labgap.stats.decision import Decisions, decide, family_verdict, verdict_reasons
from labgap.stats.intervals import (
    Effect,
    fieller_interval,
    fieller_pieces,
    is_usable,
    t_interval,
    t_p_value,
    welch_df,
)
from labgap.stats.power import seeds_for_test, seeds_to_decide
from labgap.stats.samples import TaskData, task_data
from labgap.stats.schemas import (
    DESCRIPTIVE_LEVEL,
    QUESTIONS,
    RHO_KINDS,
    VERDICTS,
    Candidate,
    GapAnalysis,
    GapConfig,
    Headline,
    LabEffect,
    SearchBaseline,
    TargetGap,
    TaskSample,
    num,
)
from labgap.stats.sequential import look_level
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


def _descriptive_level(config: GapConfig, look: int) -> float:
    """Nominal level of the reported 95% interval at a look (0.95 with the fixed design)."""
    return look_level(config.design, config.schedule, 1.0 - DESCRIPTIVE_LEVEL, look)


def estimate_fields(data, sample: TaskSample, config: GapConfig) -> dict:
    """The `EffectEstimate` fields of a lab or target sample."""
    return {
        "look": sample.look,
        "stop_reason": sample.stop_reason,
        "ci_level": _descriptive_level(config, sample.look),
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
    sample: TaskSample,
    decisions: Decisions,
    config: GapConfig,
    candidates: list[Candidate] | None,
    selected: str | None,
    baseline: SearchBaseline | None,
) -> LabEffect:
    flags, reasons = list(data.flags), list(data.reasons)
    fields = estimate_fields(data, sample, config)
    ci_low, ci_high = t_interval(data.effect, fields["ci_level"])
    positive, negative = bool(decisions.lab_positive[0]), bool(decisions.lab_negative[0])
    level = float(decisions.lab_level[0])
    seeds = None
    if not positive:
        flags.append("no_lab_effect")
        low, high = num(decisions.lab_low[0]), num(decisions.lab_high[0])
        if low is None:
            why = "the lab effect could not be estimated"
        elif negative:
            why = f"the winner is worse than the baseline: upper bound at level {level:.4g} is "
            why += f"{high:.4g} < 0"
        else:
            why = f"its lower bound at level {level:.4g} is {low:.4g} <= 0"
        reasons.append(f"no lab effect to transfer: {why}; no target is judged (all inconclusive)")
        delta = num(data.effect.delta)
        if delta is not None and delta > 0 and data.sd:
            seeds = seeds_for_test(delta, data.sd, (1 - level) / 2, config.power)
    winner = winner_fields(candidates, selected, baseline, flags, reasons)
    return LabEffect(
        **fields,
        ci_low=num(ci_low),
        ci_high=num(ci_high),
        ci_adj_low=num(decisions.lab_low[0]),
        ci_adj_high=num(decisions.lab_high[0]),
        p_value=num(t_p_value(data.effect)),
        positive=positive,
        negative=negative,
        level=level,
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


def _piece(low: float, high: float) -> str:
    """One piece of a Fieller set in interval notation: infinite ends are open."""
    left = "(−∞" if math.isinf(low) else f"[{low:.4g}"
    right = "∞)" if math.isinf(high) else f"{high:.4g}]"
    return f"{left}, {right}"


def _ratio_set(target: Effect, lab: Effect, level: float) -> tuple[float, float, int, str | None]:
    """ρ's Fieller set: its ends, kind, and every piece in words when it is a union."""
    low, high, kind = fieller_interval(target, lab, level)
    text = None
    if RHO_KINDS[int(kind)] == "union":
        text = " ∪ ".join(_piece(a, b) for a, b in fieller_pieces(target, lab, level))
    return low, high, int(kind), text


def _target_gap(
    j: int,
    data: TaskData,
    sample: TaskSample,
    lab: Effect,
    decisions: Decisions,
    config: GapConfig,
    p_holm,
) -> TargetGap:
    flags, reasons = list(data.flags), list(data.reasons)
    verdict = VERDICTS[int(decisions.verdict[0, j])]
    level = float(decisions.levels[0, j])
    low, high = float(decisions.low[0, j]), float(decisions.high[0, j])
    margin_upper = float(decisions.margin.upper[0, j])
    if not decisions.lab_positive[0]:
        flags.append("no_lab_effect")
        reasons.append("not judged: there is no lab effect to transfer (see the lab's reasons)")
    elif not is_usable(data.effect):
        reasons.append("inconclusive: no interval for this target (see above)")
    else:
        extra_flags, extra_reasons = verdict_reasons(
            verdict, low, margin_upper, high, config, level
        )
        flags += extra_flags
        reasons += extra_reasons
    seeds = None
    if verdict == "inconclusive" and decisions.lab_positive[0]:
        seeds, why = seeds_to_decide(data, lab, config, level)
        reasons.append(why)
    fields = estimate_fields(data, sample, config)
    shown = fields["ci_level"]
    ci95 = t_interval(data.effect, shown)
    rho_low, rho_high, rho_kind, rho_set = _ratio_set(data.effect, lab, shown)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = data.effect.delta / lab.delta
    var_t, var_l = data.effect.se**2, lab.se**2  # Δ_j-hat − Δ_lab-hat if Δ_j = Δ_lab
    spread = Effect(
        lab.delta, np.sqrt(var_t + var_l), welch_df(var_t, data.effect.df, var_l, lab.df)
    )
    prediction = t_interval(spread, shown)
    log10_bf = _bayes_factor(data.effect, lab)
    margin = decisions.margin
    return TargetGap(
        **fields,
        ci95_low=num(ci95[0]),
        ci95_high=num(ci95[1]),
        ci_adj_low=num(low),
        ci_adj_high=num(high),
        p_value=num(t_p_value(data.effect)),
        p_holm=p_holm,
        rho=num(rho),
        rho_ci_low=num(rho_low),
        rho_ci_high=num(rho_high),
        rho_ci_kind=RHO_KINDS[rho_kind],
        rho_ci_set=rho_set,
        margin=num(margin.delta[0, j]),
        margin_se=num(margin.se[0, j]),
        margin_upper=num(margin_upper),
        verdict=verdict,
        role=sample.role,
        level=level,
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


def _headline(role: str, targets: list[TargetGap], alpha: float, lab_positive: bool) -> Headline:
    """One question's verdict over its family (every target must replicate; any failure fails)."""
    verdict = VERDICTS[int(family_verdict(np.array([VERDICTS.index(t.verdict) for t in targets])))]
    counts = {v: sum(t.verdict == v for t in targets) for v in VERDICTS}
    flags, reasons = [], []
    if not lab_positive:
        flags.append("no_lab_effect")
        reasons.append("no lab effect to transfer: nothing is judged")
    if counts["replicated"] and counts["failed_to_replicate"]:
        flags.append("heterogeneous")
        reasons.append("targets disagree: some replicated, some failed to replicate")
    reasons.append(
        f"{counts['replicated']} of {len(targets)} replicated, {counts['failed_to_replicate']} "
        f"failed, {counts['inconclusive']} inconclusive (α = {alpha:g} over the family: "
        f"{alpha / len(targets):.4g} per target)"
    )
    rule = {
        "replicated": "every target replicated",
        "failed_to_replicate": "at least one target keeps too little of the lab effect",
        "inconclusive": "not every target is decided",
    }
    reasons.append(f"{verdict}: {rule[verdict]}")
    return Headline(
        question=QUESTIONS[role],
        role=role,
        verdict=verdict,
        targets=[t.name for t in targets],
        alpha_per_target=alpha / len(targets),
        flags=flags,
        reasons=reasons,
    )


def _overall(headlines: list[Headline]) -> tuple[str, list[str], list[str]]:
    """Both questions together: replicated only if each is, failed if either failed. The
    headlines themselves are what to read; this line never lets one stand for the other."""
    verdict = VERDICTS[
        int(family_verdict(np.array([VERDICTS.index(h.verdict) for h in headlines])))
    ]
    flags = sorted({flag for h in headlines for flag in h.flags})
    reasons = [f"{h.question}: {h.verdict}" for h in headlines]
    return verdict, flags, reasons


def _levels(config: GapConfig, samples: list[TaskSample]) -> list[float]:
    """Each target's decision level: α split over its family, at its look's nominal level."""
    family_size = {role: sum(s.role == role for s in samples) for role in QUESTIONS}
    return [
        look_level(config.design, config.schedule, config.alpha / family_size[s.role], s.look)
        for s in samples
    ]


def analyse_gap(
    lab: TaskSample,
    targets: list[TaskSample],
    config: GapConfig,
    candidates: list[Candidate] | None = None,
    selected: str | None = None,
    baseline: SearchBaseline | None = None,
) -> GapAnalysis:
    """Lab effect, per-target gaps, transfer ratios, verdicts and the two headline verdicts.

    `lab` holds the winner and the baseline on fresh seeds never used in the search. Each target
    belongs to the family of its role (held-out: generalisation; production). `candidates` (the
    leaderboard) and `selected` (default: the top mean) only feed the naive and hybrid figures
    reported beside the lab effect; `baseline` (its search-seed count and SE) is needed for the
    hybrid one. Each sample's `look` sets its intervals' level in a sequential design.
    Invalid input raises pydantic.ValidationError;
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
        lab_level=look_level(config.design, config.schedule, config.alpha, study.lab.look),
        levels=np.array([_levels(config, study.targets)]),
        rho_min=config.rho_min,
        absolute_floor=config.absolute_floor,
    )
    lab_result = _lab_effect(
        lab_data,
        study.lab,
        decisions,
        config,
        study.candidates,
        study.selected,
        study.baseline,
    )
    p_holm = _holm([num(t_p_value(d.effect)) for d in target_data], config.alpha)
    gaps = [
        _target_gap(j, d, sample, lab_data.effect, decisions, config, p_holm[j])
        for j, (d, sample) in enumerate(zip(target_data, study.targets, strict=True))
    ]
    headlines = [
        _headline(role, family, config.alpha, lab_result.positive)
        for role in QUESTIONS
        if (family := [g for g in gaps if g.role == role])
    ]
    verdict, flags, reasons = _overall(headlines)
    return GapAnalysis(
        lab=lab_result,
        targets=gaps,
        headlines=headlines,
        overall_verdict=verdict,
        overall_flags=flags,
        overall_reasons=reasons,
        alpha=config.alpha,
        rho_min=config.rho_min,
        absolute_floor=config.absolute_floor,
        design=config.design,
        schedule=config.schedule,
    )
