"""The replication study flow: plan → agent rounds → confirmation → transfer → gap analysis.

The flow process is the only DuckDB writer. Every stage's output passes its quality gate before it
is written and before the next stage reads it. Re-running a study id resumes it: trials already
recorded are read back, agents are replayed from the same seeds and scores, and no row is written
twice.
"""

import json

import polars as pl
from prefect import flow, get_run_logger

from flows.run import VANILLA, StudyRun, make_runner
from flows.search import search
from labgap.gap import gap_rows, paired_rows
from labgap.methods import MethodSpec
from labgap.plan import agent_rows, study_row, task_rows
from labgap.scoring import pick_winner, reward_hacking_flags
from labgap.stats import GapAnalysis
from labgap.store import Store
from labgap.study import StudyConfig
from labgap.summary import StudySummary, summarise_study
from tasks.report import alert_on_verdict_change, publish_report
from tasks.stages import gap_analysis, generate_tasks

DEFAULT_CONFIG = StudyConfig()


def confirm_and_transfer(run: StudyRun, winner: MethodSpec) -> pl.DataFrame:
    """Winner vs vanilla on fresh seeds: on the lab task (the lab effect) and on every target."""
    seeds = run.config.fresh_seeds()
    frames = []
    for planned in [run.plan.lab, *run.plan.targets]:
        phase = "confirm" if planned.role == "lab" else "transfer"
        batch = f"{phase}-{planned.spec.name}"
        results = run.trials(planned.spec, [VANILLA, winner], seeds, phase, batch)
        baseline = [t for t in results if t.method_hash == VANILLA.method_hash]
        challenger = [t for t in results if t.method_hash == winner.method_hash]
        role = "lab_confirmation" if planned.role == "lab" else planned.role
        frames.append(paired_rows(run.study_id, planned.spec.name, role, baseline, challenger))
    transfer = pl.concat(frames)
    run.gate("transfer_trials", transfer)
    run.store.insert("transfer_trials", transfer)
    return transfer


def hacking_check(
    run: StudyRun,
    winner: MethodSpec,
    winner_dev_pgr: float,
    baseline_dev_pgr: float,
    analysis: GapAnalysis,
) -> dict:
    lab_trials = run.store.query(
        "SELECT method_hash, student_top_class_share FROM trials "
        "WHERE study_id = ? AND phase = 'confirm'",
        [run.study_id],
    )
    own = lab_trials.filter(pl.col("method_hash") == winner.method_hash)
    base = lab_trials.filter(pl.col("method_hash") == VANILLA.method_hash)
    flags = reward_hacking_flags(
        winner_dev_pgr,
        winner_dev_pgr - baseline_dev_pgr,
        analysis.lab.delta,
        float(own["student_top_class_share"].mean()),
        float(base["student_top_class_share"].mean()),
    )
    return flags.model_dump()


def finish(store: Store, study_id: str, status: str, verdict=None, error=None, hacking=None):
    with store.transaction() as cursor:
        cursor.execute(
            "UPDATE studies SET status = ?, overall_verdict = ?, error = ?, hacking_flags = ?, "
            "finished_at = current_timestamp WHERE study_id = ?",
            [status, verdict, error, json.dumps(hacking) if hacking else None, study_id],
        )


@flow(name="replication-study", log_prints=True)
def replication_study(
    config: StudyConfig = DEFAULT_CONFIG, db_path: str | None = None
) -> StudySummary:
    """Run (or resume) one replication study and return its summary."""
    logger = get_run_logger()
    plan = generate_tasks(config)
    study_id = plan.study_id
    with Store(db_path) as store:
        logger.info(
            f"study {study_id}: {len(plan.agents)} {config.agent_backend} agents, lab "
            f"{plan.lab.spec.name}, {len(plan.targets)} target(s); database {store.path}"
        )
        tasks_frame = task_rows(plan)
        store.insert("studies", study_row(plan))
        try:
            with make_runner(config) as runner:
                run = StudyRun(plan, store, runner)
                run.gate("tasks", tasks_frame)
                store.insert("tasks", tasks_frame)
                store.insert("agents", agent_rows(plan))
                board, baseline_dev_pgr = search(run)
                winner_row = pick_winner(board)
                winner = MethodSpec.model_validate_json(winner_row["method_json"])
                logger.info(
                    f"winner {winner_row['method_hash']} ({winner.family}): dev PGR "
                    f"{winner_row['mean_dev_pgr']:.3f}; confirming on fresh seeds"
                )
                transfer = confirm_and_transfer(run, winner)
            analysis = gap_analysis(
                transfer,
                plan.lab.spec.name,
                config.alpha,
                config.rho_min,
                board,
                winner_row["method_hash"],
                baseline_dev_pgr,
            )
            gaps = gap_rows(study_id, analysis, {t.spec.name: t.role for t in plan.targets})
            run.gate("gap_results", gaps)
            store.insert("gap_results", gaps)
            hacking = hacking_check(
                run, winner, winner_row["mean_dev_pgr"], baseline_dev_pgr, analysis
            )
            finish(store, study_id, "completed", analysis.overall_verdict, hacking=hacking)
        except Exception as error:
            finish(store, study_id, "failed", error=f"{type(error).__name__}: {error}")
            raise
        files = publish_report(store, study_id)
        logger.info(f"report: {files.markdown}")
        change = alert_on_verdict_change(store, study_id)
        if change is not None:
            logger.warning(
                f"overall verdict changed: {change.previous_verdict} ({change.previous_study_id}) "
                f"-> {change.verdict}"
            )
        return summarise_study(store, study_id)
