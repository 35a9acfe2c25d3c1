"""The study's results where users look: report files and plots, UI artifacts, and an event.

Every surface renders one `ReportData` (`labgap.reporting.data.load_report_data`): nothing here
reads the database. Ops can attach a Prefect automation to the event
`labgap.study.verdict-changed`: it is emitted when a study's overall verdict differs from the
previous completed study of the same name.
"""

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from labgap.reporting.data import ReportData
from labgap.reporting.markdown import ReportFiles, render_markdown, write_report
from labgap.reporting.summary import VerdictChange, verdict_change

VERDICT_CHANGED = "labgap.study.verdict-changed"
LEADERBOARD_ARTIFACT_ROWS = 20
LEADERBOARD_ARTIFACT_COLUMNS = (
    "rank",
    "family",
    "mean_dev_pgr",
    "se_dev_pgr",
    "n_seeds",
    "proposed_by",
    "method_hash",
)


def artifact_key(study_id: str, what: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{what}-{study_id}".lower()).strip("-")[:100]


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(data: ReportData) -> ReportFiles:
    """Write report.md and its plots, and show the leaderboard and the report in the UI."""
    study_id = data.study.study_id
    files = write_report(data)
    create_table_artifact(
        key=artifact_key(study_id, "leaderboard"),
        table=[
            {column: getattr(row, column) for column in LEADERBOARD_ARTIFACT_COLUMNS}
            for row in data.leaderboard[:LEADERBOARD_ARTIFACT_ROWS]
        ],
        description=f"Leaderboard of study {study_id}: mean dev PGR over the pipeline's trials",
    )
    plots = "\n".join(
        f"- {name}: `{path}`"
        for name, path in [
            ("research progress", files.research_progress),
            ("forest plot", files.forest_plot),
            ("gap trend", files.gap_trend),
        ]
    )
    create_markdown_artifact(
        key=artifact_key(study_id, "report"),
        markdown=f"{render_markdown(data)}\n\n## Files\n\n- report: `{files.markdown}`\n{plots}\n",
        description=f"Replication study {study_id}: verdicts, lab effect, targets, cost",
    )
    return files


@task(name="alert-on-verdict-change", cache_policy=NO_CACHE)
def alert_on_verdict_change(data: ReportData) -> VerdictChange | None:
    change = verdict_change(data)
    if change is not None:
        emit_event(
            event=VERDICT_CHANGED,
            resource={
                "prefect.resource.id": f"labgap.study-name.{change.name}",
                "prefect.resource.name": change.name,
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
