"""Stage tasks that run in the flow process: planning, agents, scoring, gates, analysis.

They stay in the flow process on purpose: agents keep state between rounds, the scorer holds the
budgets, and great-expectations contexts are not thread-safe.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.agents.base import Agent, ForumPost, Proposal
from labgap.gap import analyse_transfer
from labgap.plan import build_plan
from labgap.quality import validate_stage
from tasks.retry import RETRY_OPTIONS

generate_tasks = task(build_plan, name="generate-tasks", cache_policy=NO_CACHE, **RETRY_OPTIONS)
quality_gate = task(
    validate_stage, name="quality-gate", cache_policy=NO_CACHE, task_run_name="gate-{stage}"
)
gap_analysis = task(analyse_transfer, name="gap-analysis", cache_policy=NO_CACHE)


@task(
    name="agent-propose",
    cache_policy=NO_CACHE,
    task_run_name="agent{agent.agent_id}-round{round_index}",
)
def agent_propose(agent: Agent, round_index: int, n: int, forum: list[ForumPost]) -> list[Proposal]:
    return agent.propose(round_index, n, forum)
