"""What a study says, and whether a headline verdict changed, from its `ReportData` (no further
reads)."""

from pathlib import Path

from pydantic import BaseModel

from labgap.methods.kinds import describe_recorded
from labgap.reporting.data import GapRow, ReportData
from labgap.reporting.questions import QUESTIONS, answer


class TargetSummary(BaseModel):
    target: str
    role: str | None
    n: int | None
    effect: float | None
    ci95_low: float | None
    ci95_high: float | None
    rho: float | None
    verdict: str | None
    reasons: list[str]
    look: int | None
    stop_reason: str | None


class StudySummary(BaseModel):
    study_id: str
    name: str
    status: str
    database: str
    baseline_dev_pgr: float | None
    winner_method: str | None
    winner_label: str | None = None
    winner_given: bool = False
    winner_family: str | None
    winner_dev_pgr: float | None
    winner_fresh_test_pgr: float | None
    baseline_fresh_test_pgr: float | None
    lab_effect: float | None
    lab_ci95_low: float | None
    lab_ci95_high: float | None
    naive_lab_effect: float | None
    lab_seeds: int | None
    lab_stop_reason: str | None
    versus_known: TargetSummary | None = None
    """The winner minus the known-methods baseline on the fresh lab seeds (role: the known one)."""
    targets: list[TargetSummary]
    generalisation_verdict: str | None
    """Over the held-out tasks (role `heldout`)."""
    generalisation_reasons: list[str]
    """Why; without a verdict, why not (not asked, not decided yet)."""
    production_verdict: str | None
    """Over the production targets (role `production`)."""
    production_reasons: list[str]
    design: str | None
    overall_verdict: str | None
    """Both questions together: answers neither alone."""
    overall_reasons: list[str]
    hacking_flags: list[str]


def study_summary(data: ReportData, database: Path | str | None = None) -> StudySummary:
    """The CLI's summary of a study; `database` defaults to the one the data was read from."""
    study, lab, winner, hacking = data.study, data.lab, data.winner, data.study.hacking
    generalisation, production = (answer(data, question) for question in QUESTIONS)
    return StudySummary(
        study_id=study.study_id,
        name=study.name,
        status=study.status,
        database=str(data.database if database is None else database),
        baseline_dev_pgr=data.baseline_dev_pgr,
        winner_method=winner.method_json if winner else None,
        winner_label=describe_recorded(winner.method_json) if winner else None,
        winner_given=bool(winner and winner.proposed_by == "given"),
        winner_family=winner.family if winner else None,
        winner_dev_pgr=winner.mean_dev_pgr if winner else None,
        winner_fresh_test_pgr=data.winner_fresh_test_pgr,
        baseline_fresh_test_pgr=data.baseline_fresh_test_pgr,
        lab_effect=lab.delta if lab else None,
        lab_ci95_low=lab.ci95_low if lab else None,
        lab_ci95_high=lab.ci95_high if lab else None,
        naive_lab_effect=lab.naive_estimate if lab else None,
        lab_seeds=lab.n if lab else None,
        lab_stop_reason=lab.stop_reason if lab else None,
        versus_known=next(
            (_target(row, row.detail.get("known")) for row in data.gaps_of("versus_known")), None
        ),
        targets=[_target(row, row.role) for row in data.gaps_of("target")],
        generalisation_verdict=generalisation[0],
        generalisation_reasons=generalisation[1],
        production_verdict=production[0],
        production_reasons=production[1],
        design=study.design,
        overall_verdict=study.overall_verdict,
        overall_reasons=data.overall.reasons if data.overall else [],
        hacking_flags=hacking.flags if hacking else [],
    )


def _target(row: GapRow, role: str | None) -> TargetSummary:
    return TargetSummary(
        target=row.target,
        role=role,
        n=row.n,
        effect=row.delta,
        ci95_low=row.ci95_low,
        ci95_high=row.ci95_high,
        rho=row.rho,
        verdict=row.verdict,
        reasons=row.reasons,
        look=row.look,
        stop_reason=row.stop_reason,
    )


class HeadlineChange(BaseModel):
    """One question whose verdict changed; `overall` only against a study recorded before the
    headline verdicts, which has nothing else to compare."""

    question: str
    verdict: str | None
    previous_verdict: str | None


class VerdictChange(BaseModel):
    """A completed study whose generalisation or production verdict differs from the previous
    completed study's of the same name."""

    name: str
    study_id: str
    previous_study_id: str
    generalisation_verdict: str | None
    production_verdict: str | None
    previous_generalisation_verdict: str | None
    previous_production_verdict: str | None
    changes: list[HeadlineChange]

    @property
    def verdict(self) -> str:
        """The changed verdicts now, e.g. "production inconclusive" (for one log line)."""
        return "; ".join(f"{change.question} {change.verdict}" for change in self.changes)

    @property
    def previous_verdict(self) -> str:
        return "; ".join(f"{change.question} {change.previous_verdict}" for change in self.changes)


def verdict_change(data: ReportData) -> VerdictChange | None:
    """Set when this completed study's verdict on either question differs from the previous
    completed one's. Only questions both studies answered are compared; when there is none (a
    previous study recorded before the headline verdicts), the verdicts over both questions are."""
    study, previous = data.study, data.previous
    if study.status != "completed" or previous is None:
        return None
    pairs = {
        question: (now, before)
        for question in QUESTIONS
        if (now := getattr(study, f"{question}_verdict")) is not None
        and (before := getattr(previous, f"{question}_verdict")) is not None
    }
    if not pairs:
        pairs = {"overall": (study.overall_verdict, previous.overall_verdict)}
    changes = [
        HeadlineChange(question=question, verdict=now, previous_verdict=before)
        for question, (now, before) in pairs.items()
        if now != before
    ]
    if not changes:
        return None
    return VerdictChange(
        name=study.name,
        study_id=study.study_id,
        previous_study_id=previous.study_id,
        generalisation_verdict=study.generalisation_verdict,
        production_verdict=study.production_verdict,
        previous_generalisation_verdict=previous.generalisation_verdict,
        previous_production_verdict=previous.production_verdict,
        changes=changes,
    )
