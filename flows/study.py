"""The replication study flow: plan → search → confirm → transfer → analyse → report.

Each stage's output passes its quality gate and is recorded before the next stage starts; trials,
scoring calls and forum posts are recorded as they complete. The flow process is the only DuckDB
writer. Re-running a study id resumes it: recorded trials are not run again, agents replay from
the same seeds and scores, and no row is written twice.
"""

import logging
from functools import partial

from prefect import flow, get_run_logger

from flows.agents import study_agents
from flows.executor import PrefectExecutor, experiment_executor, idle_work
from labgap.config import StudyConfig
from labgap.plan import StudyPlan
from labgap.progress import StudyProgress
from labgap.replication import Replication, first_look_baselines
from labgap.reporting.data import load_report_data
from labgap.reporting.summary import StudySummary, study_summary
from labgap.search.scoring import GuardedLab
from labgap.stages import SearchResult
from labgap.store.connection import Store
from labgap.store.record import (
    StudyRecorder,
    load_recorded_programs,
    recorded_failures,
    recorded_scoring_calls,
    recorded_trials,
)
from labgap.trials import TrialBook
from tasks.logs import quiet_completed_task_runs
from tasks.report import alert_on_verdict_change, publish_report
from tasks.stages import (
    analyse_stage,
    given_stage,
    known_stage,
    plan_stage,
    quality_gate,
    replicate_stage,
    search_stage,
)

FORM_DEFAULT = StudyConfig.model_construct()
"""The run form's starting point: every size empty, so the chosen profile decides it (a resolved
default would pre-fill the default profile's sizes, and explicit values win over any profile)."""


@flow(name="replication-study", log_prints=True)
def replication_study(
    config: StudyConfig = FORM_DEFAULT, db_path: str | None = None
) -> StudySummary:
    """Run (or resume) one replication study and return its summary."""
    logger = get_run_logger()
    quiet_completed_task_runs()
    config = StudyConfig.model_validate(config.model_dump())
    with experiment_executor(config) as executor:  # its workers start while the plan loads data
        plan = plan_stage(config)
        config, study_id, progress = plan.config, plan.study_id, StudyProgress(plan, logger.info)
        with Store(db_path) as store:
            logger.info(
                f"study {study_id}: {len(plan.agents)} {config.agent_backend} agents, lab "
                f"{plan.lab.spec.name}, {len(plan.targets)} target(s); database {store.path}"
            )
            gate = partial(quality_gate, study_id=study_id)
            record = StudyRecorder(store, study_id, plan.code_version, gate)
            earlier = record.study_started(plan)
            if earlier is not None:
                left = "by a process that ended" if earlier == "running" else earlier
                logger.info(f"resuming study {study_id}, left {left}: recorded results are kept")
            try:
                progress.stage("plan")
                record.plan(plan)
                progress.finished(f"{1 + len(plan.targets)} tasks, {len(plan.agents)} agents")
                found, replicated = _experiments(plan, store, record, executor, progress, logger)
                progress.stage("analyse")
                analysis = analyse_stage(plan, found, replicated)
                record.gap_results(analysis, config.target_roles())
                record.finished("completed", analysis, hacking=replicated.confirmation.hacking)
                progress.finished(
                    " · ".join(f"{h.question} {h.verdict}" for h in analysis.headlines)
                )
            except BaseException as error:
                # Ctrl-C, SIGTERM and a Prefect cancellation are BaseExceptions: the study is
                # `cancelled` (a later run of the same id resumes it), anything else `failed`.
                ended = "failed" if isinstance(error, Exception) else "cancelled"
                reason = f"{type(error).__name__} during {progress.current}"
                record.finished(ended, error=f"{reason}: {error}" if str(error) else reason)
                raise
            data = load_report_data(store, study_id)
            files = publish_report(data)
            logger.info(f"report: {files.markdown}")
            change = alert_on_verdict_change(data)
            if change is not None:
                logger.warning(
                    f"verdict changed: {change.previous_verdict} ({change.previous_study_id}) "
                    f"-> {change.verdict}"
                )
            return study_summary(data, str(store.path))


def _experiments(
    plan: StudyPlan,
    store: Store,
    record: StudyRecorder,
    executor: PrefectExecutor,
    progress: StudyProgress,
    logger: logging.Logger,
) -> tuple[SearchResult, Replication]:
    """Stages 2-4: every experiment of the study, through one trial book."""
    config = plan.config
    load_recorded_programs(store)
    book = TrialBook(
        executor,
        recorded_trials(store, plan.study_id),
        record.trials,
        progress.experiments,
        recorded_failures(store, plan.study_id),
    )
    calls = recorded_scoring_calls(store, plan.study_id)
    lab = GuardedLab(
        plan.lab.spec, book, config.search_seeds, config.budget, calls, record.scoring_calls
    )
    progress.stage("search")
    with idle_work(executor, book, first_look_baselines(plan)):
        if config.candidate_method is not None:
            found = given_stage(plan, book, config.candidate_method)
        else:
            agents = study_agents(plan, store)
            found = search_stage(plan, agents, lab, book, record, logger.info)
        record.leaderboard(found.leaderboard)
        winner = found.winner_entry
        progress.finished(
            f"{len(found.calls)} scoring calls; winner {winner['family']} "
            f"({winner['method_hash']}), dev PGR {winner['mean_dev_pgr']:.3f}"
        )
        progress.stage("confirm and transfer")
        known = known_stage(plan, book)
    replicated = replicate_stage(plan, book, found, known, progress.look)
    record.transfer_trials(replicated.confirmation.pairs, "confirm")
    record.transfer_trials(replicated.transferred.pairs, "transfer")
    progress.finished(
        "; ".join(f"{t.task} {t.seeds} seeds ({t.stop_reason})" for t in replicated.looks)
    )
    return found, replicated
