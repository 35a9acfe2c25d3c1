"""What a study says, and whether its verdict changed, from its `ReportData` (no further reads)."""

from pathlib import Path

from pydantic import BaseModel

from labgap.methods.kinds import describe_recorded
from labgap.reporting.data import GapRow, ReportData


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
    versus_known: TargetSummary | None = None
    """The winner minus the known-methods baseline on the fresh lab seeds (role: the known one)."""
    targets: list[TargetSummary]
    overall_verdict: str | None
    overall_reasons: list[str]
    hacking_flags: list[str]


def study_summary(data: ReportData, database: Path | str | None = None) -> StudySummary:
    """The CLI's summary of a study; `database` defaults to the one the data was read from."""
    study, lab, winner, hacking = data.study, data.lab, data.winner, data.study.hacking
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
        versus_known=next(
            (_target(row, row.detail.get("known")) for row in data.gaps_of("versus_known")), None
        ),
        targets=[_target(row, row.role) for row in data.gaps_of("target")],
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
    )


class VerdictChange(BaseModel):
    """A study whose overall verdict differs from the previous completed study of the same name."""

    name: str
    study_id: str
    verdict: str
    previous_study_id: str
    previous_verdict: str


def verdict_change(data: ReportData) -> VerdictChange | None:
    """Set when this completed study's verdict differs from the previous completed one's."""
    study, previous = data.study, data.previous
    if study.status != "completed" or previous is None:
        return None
    if study.overall_verdict == previous.overall_verdict:
        return None
    return VerdictChange(
        name=study.name,
        study_id=study.study_id,
        verdict=study.overall_verdict,
        previous_study_id=previous.study_id,
        previous_verdict=previous.overall_verdict,
    )
