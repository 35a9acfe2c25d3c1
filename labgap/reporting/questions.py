"""The two headline questions, named the same way on every report surface.

A study answers two questions, each over its own family of targets: does the lab winner
generalise (the held-out tasks) and does it transfer to production (the production targets)?
Every surface labels a verdict with its question, and shows the overall verdict only as both
questions together, so no reader can take one question's verdict, or the conjunction, for the
other's.
"""

from labgap.reporting.data import ReportData
from labgap.stats.schemas import QUESTIONS as ROLE_QUESTIONS

FAMILIES = {"generalisation": "held-out tasks", "production": "production targets"}
"""Each headline question (`gap_results.target` of its headline row) and the targets that answer
it, in the order every surface shows them."""
QUESTIONS = {
    "generalisation": f"generalisation ({FAMILIES['generalisation']})",
    "production": f"production transfer ({FAMILIES['production']})",
}
"""Each question's label."""
ROLES = {question: role for role, question in ROLE_QUESTIONS.items()}
"""The target role of each question's family."""
BOTH = "both questions together"
"""The label of the overall verdict: replicated only if both are, failed if either failed."""
REPEATED_INTERVALS = "95% intervals are repeated confidence intervals over the planned looks"
"""Why a sequential study's "95%" intervals are wider than a fixed design's at the same seeds."""


def answer(data: ReportData, question: str) -> tuple[str | None, list[str]]:
    """A question's verdict and its reasons; without a verdict, a reason says why not."""
    study, row = data.study, data.headline(question)
    verdict = getattr(study, f"{question}_verdict")
    if verdict is not None:
        return verdict, row.reasons if row else []
    targets = data.gaps_of("target")
    if targets and all(target.role != ROLES[question] for target in targets):
        return None, [f"not asked: the study has no {FAMILIES[question]}"]
    if study.overall_verdict is not None:
        return None, [
            "not recorded: the study predates the two headline verdicts; its one verdict over "
            f"all targets was {study.overall_verdict}"
        ]
    return None, [f"not decided yet (status {study.status})"]


def seeds_text(n: int | None, stop_reason: str | None, look: int | None = None) -> str:
    """A task's fresh paired seeds and why it got no more, e.g. "8 (decided)"."""
    why = [f"look {look}"] if look else []
    why += [stop_reason] if stop_reason else []
    return ("—" if n is None else str(n)) + (f" ({', '.join(why)})" if why else "")
