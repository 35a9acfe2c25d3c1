"""The study's results where users look: report files and plots, UI artifacts, and an event.

Ops can attach a Prefect automation to the event `labgap.study.verdict-changed`: it is emitted
when a study's overall verdict differs from the previous completed study of the same name.
"""

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from labgap.report import ReportFiles, render_markdown, write_report
from labgap.scoring import read_leaderboard
from labgap.store import Store
from labgap.summary import VerdictChange, verdict_change

VERDICT_CHANGED = "labgap.study.verdict-changed"


def artifact_key(study_id: str, what: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{what}-{study_id}".lower()).strip("-")[:100]


@task(name="publish-report", cache_policy=NO_CACHE)
def publish_report(store: Store, study_id: str) -> ReportFiles:
    """Write report.md and its plots, and show the leaderboard and the report in the UI."""
    files = write_report(store, study_id)
    board = read_leaderboard(store, study_id).head(20)
    create_table_artifact(
        key=artifact_key(study_id, "leaderboard"),
        table=board.select(
            "rank", "family", "mean_dev_pgr", "se_dev_pgr", "n_seeds", "proposed_by", "method_hash"
        ).to_dicts(),
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
        markdown=f"{render_markdown(store, study_id)}\n\n## Files\n\n- report: `{files.markdown}`\n{plots}\n",
        description=f"Replication study {study_id}: verdicts, lab effect, targets, cost",
    )
    return files


@task(name="alert-on-verdict-change", cache_policy=NO_CACHE)
def alert_on_verdict_change(store: Store, study_id: str) -> VerdictChange | None:
    change = verdict_change(store, study_id)
    if change is not None:
        emit_event(
            event=VERDICT_CHANGED,
            resource={
                "prefect.resource.id": f"labgap.study-name.{change.name}",
                "prefect.resource.name": change.name,
            },
            related=[
                {
                    "prefect.resource.id": f"labgap.study.{study_id}",
                    "prefect.resource.role": "study",
                }
            ],
            payload=change.model_dump(),
        )
    return change
