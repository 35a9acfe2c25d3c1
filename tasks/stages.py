"""Stage tasks that run in the flow process: planning, agents, scoring, gates, analysis.

They stay in the flow process on purpose: agents keep state between rounds, the scorer holds the
budgets, and great-expectations contexts are not thread-safe.
"""

import polars as pl
from labgap.agents.base import Agent, ForumPost, Proposal
from labgap.quality import SuiteResult, validate_stage
from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.gap import analyse_transfer
from labgap.plan import StudyPlan, build_plan
from labgap.stats import GapAnalysis
from labgap.study import StudyConfig
from tasks.retry import RETRY_OPTIONS


@task(name="generate-tasks", cache_policy=NO_CACHE, **RETRY_OPTIONS)
def generate_tasks(config: StudyConfig) -> StudyPlan:
    return build_plan(config)


@task(
    name="agent-propose",
    cache_policy=NO_CACHE,
    task_run_name="agent{agent.agent_id}-round{round_index}",
)
def agent_propose(agent: Agent, round_index: int, n: int, forum: list[ForumPost]) -> list[Proposal]:
    return agent.propose(round_index, n, forum)


@task(name="quality-gate", cache_policy=NO_CACHE, task_run_name="gate-{stage}")
def quality_gate(stage: str, frame: pl.DataFrame, study_id: str) -> SuiteResult:
    return validate_stage(stage, frame, study_id)


@task(name="gap-analysis", cache_policy=NO_CACHE)
def gap_analysis(
    transfer: pl.DataFrame,
    lab_task: str,
    alpha: float,
    rho_min: float,
    board: pl.DataFrame,
    winner_hash: str,
    baseline_dev_pgr: float,
) -> GapAnalysis:
    return analyse_transfer(
        transfer, lab_task, alpha, rho_min, board, winner_hash, baseline_dev_pgr
    )
