"""The study's results where users look: report files and plots, UI artifacts, and an event.

Every surface renders one `ReportData` (`labgap.reporting.data.load_report_data`): nothing here
reads the database. The UI artifacts are keyed by study name (the study id is in their description)
and carry their figures inline, since the UI cannot reach the flow's disk. Ops can attach a Prefect
automation to the event `labgap.study.verdict-changed`: it is emitted when a study's
generalisation or production verdict differs from the previous completed study's of the same name.
"""

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from labgap.reporting.data import ReportData
from labgap.reporting.markdown import (
    ReportFiles,
    inline_figures,
    leaderboard_rows,
    render_markdown,
    write_report,
)
from labgap.reporting.markup import code, text
from labgap.reporting.questions import QUESTIONS
from labgap.reporting.summary import VerdictChange, verdict_change

VERDICT_CHANGED = "labgap.study.verdict-changed"
LEADERBOARD_ARTIFACT_ROWS = 20


def artifact_key(name: str, what: str) -> str:
    """One key per study name, so a deployment's artifacts of one kind form a history.

    Keys allow lowercase letters, digits and dashes only.
    """
    return re.sub(r"[^a-z0-9]+", "-", f"{what}-{name}".lower()).strip("-")[:100]


def report_artifact(data: ReportData, files: ReportFiles) -> str:
    """The report with its figures inline: the UI cannot reach the PNGs on the flow's machine."""
    return (
        f"{render_markdown(data, inline_figures(files))}\n"
        f"_report.md, report.html and the figures' PNGs are written to {code(files.folder)} "
        "on the machine that ran the study._\n"
    )


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(data: ReportData) -> ReportFiles:
    """Write the report's files, and show the leaderboard and the report in the UI."""
    study = data.study
    files = write_report(data)
    which = f"study {code(study.study_id)} ({text(study.status)})"
    create_table_artifact(
        key=artifact_key(study.name, "leaderboard"),
        table=leaderboard_rows(data, LEADERBOARD_ARTIFACT_ROWS),
        description=f"Leaderboard of {which}: mean dev PGR over the pipeline's own trials",
    )
    create_markdown_artifact(
        key=artifact_key(study.name, "report"),
        markdown=report_artifact(data, files),
        description=f"Replication report of {which}: headline verdicts, lab effect, targets, cost",
    )
    return files


@task(name="alert-on-verdict-change", cache_policy=NO_CACHE)
def alert_on_verdict_change(data: ReportData) -> VerdictChange | None:
    """Emit the event when a headline verdict changed; its resource carries both verdicts as
    labels, so an automation can match e.g. `labgap.production-verdict: failed_to_replicate`."""
    change = verdict_change(data)
    if change is not None:
        verdicts = {
            f"labgap.{question}-verdict": verdict
            for question in QUESTIONS
            if (verdict := getattr(change, f"{question}_verdict")) is not None
        }
        emit_event(
            event=VERDICT_CHANGED,
            resource={
                "prefect.resource.id": f"labgap.study-name.{change.name}",
                "prefect.resource.name": change.name,
                **verdicts,
                "labgap.changed": ",".join(c.question for c in change.changes),
            },
            related=[
                {
                    "prefect.resource.id": f"labgap.study.{change.study_id}",
                    "prefect.resource.role": "study",
                }
            ],
            payload=change.model_dump(),
        )
    return change
