"""The replication study flow: plan → search → confirm → transfer → analyse → report.

Each stage's output passes its quality gate and is recorded before the next stage starts; trials,
scoring calls and forum posts are recorded as they complete. The flow process is the only DuckDB
writer. Re-running a study id resumes it: recorded trials are not run again, agents replay from
the same seeds and scores, and no row is written twice.
"""

from prefect import flow, get_run_logger

from flows.agents import study_agents
from flows.executor import experiment_executor
from labgap.config import StudyConfig
from labgap.reporting.data import load_report_data
from labgap.reporting.summary import StudySummary, study_summary
from labgap.search.scoring import GuardedLab
from labgap.store.connection import Store
from labgap.store.record import StudyRecorder, recorded_scoring_calls, recorded_trials
from labgap.trials import TrialBook
from tasks.report import alert_on_verdict_change, publish_report
from tasks.stages import (
    analyse_stage,
    confirm_stage,
    plan_stage,
    quality_gate,
    search_stage,
    transfer_stage,
)

DEFAULT_CONFIG = StudyConfig()


@flow(name="replication-study", log_prints=True)
def replication_study(
    config: StudyConfig = DEFAULT_CONFIG, db_path: str | None = None
) -> StudySummary:
    """Run (or resume) one replication study and return its summary."""
    logger = get_run_logger()
    plan = plan_stage(config)
    config, study_id = plan.config, plan.study_id
    with Store(db_path) as store:
        logger.info(
            f"study {study_id}: {len(plan.agents)} {config.agent_backend} agents, lab "
            f"{plan.lab.spec.name}, {len(plan.targets)} target(s); database {store.path}"
        )
        record = StudyRecorder(
            store,
            study_id,
            plan.code_version,
            lambda stage, frame: quality_gate(stage, frame, study_id),
        )
        record.study_started(plan)
        try:
            record.plan(plan)
            with experiment_executor(config) as executor:
                book = TrialBook(
                    executor, recorded_trials(store, study_id), record.trials, logger.info
                )
                lab = GuardedLab(
                    plan.lab.spec,
                    book,
                    config.search_seeds,
                    config.budget,
                    recorded_scoring_calls(store, study_id),
                    record.scoring_calls,
                )
                found = search_stage(
                    plan, study_agents(plan, store), lab, book, record, logger.info
                )
                record.leaderboard(found.leaderboard)
                winner = found.winner_entry
                logger.info(
                    f"winner {winner['method_hash']} ({winner['family']}): dev PGR "
                    f"{winner['mean_dev_pgr']:.3f}; confirming on fresh seeds"
                )
                confirmed = confirm_stage(plan, book, found)
                record.transfer_trials(confirmed.pairs, "confirm")
                transferred = transfer_stage(plan, book, found.winner)
                record.transfer_trials(transferred.pairs, "transfer")
            analysis = analyse_stage(plan, found, confirmed, transferred)
            record.gap_results(analysis, config.target_roles())
            record.finished("completed", analysis.overall_verdict, hacking=confirmed.hacking)
        except Exception as error:
            record.finished("failed", error=f"{type(error).__name__}: {error}")
            raise
        data = load_report_data(store, study_id)
        files = publish_report(data)
        logger.info(f"report: {files.markdown}")
        change = alert_on_verdict_change(data)
        if change is not None:
            logger.warning(
                f"overall verdict changed: {change.previous_verdict} ({change.previous_study_id}) "
                f"-> {change.verdict}"
            )
        return study_summary(data, str(store.path))
