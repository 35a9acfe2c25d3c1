"""Claude agent tasks: one Prefect task per agent per round, gated by a global concurrency limit.

Requests to the Messages API pass through Prefect's global concurrency limit `anthropic-api`, so
every study running against one server shares one ceiling on concurrent requests; ops can change
it in the UI. A retried round resumes from the stored conversation without repeating paid calls.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from labgap.agents.claude import ClaudeAgent, ExperimentGateway, RoundOutcome, recorded_spend
from labgap.agents.claude_log import DuckDBConversationLog
from labgap.llm import StudyBudgetTracker, api_key_from_env
from tasks.retry import RETRY_OPTIONS

API_LIMIT = "anthropic-api"


def api_slot():
    return concurrency(API_LIMIT, occupy=1, strict=True)


def claude_agents(run) -> list[ClaudeAgent]:
    """The study's Claude agents, with the spend already recorded for this study counted."""
    api_key_from_env()
    settings = run.config.claude
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(API_LIMIT)
        except ObjectNotFound:
            client.upsert_global_concurrency_limit_by_name(
                API_LIMIT, settings.max_concurrent_requests
            )
    log = DuckDBConversationLog(run.store, run.study_id)
    agent_ids = [agent.agent_id for agent in run.plan.agents]
    tracker = StudyBudgetTracker(settings.study_budget, spent=recorded_spend(log, agent_ids))
    lab = run.plan.lab.spec
    return [
        ClaudeAgent(
            agent.agent_id,
            agent.direction,
            settings,
            log,
            task_description=lab.description or lab.name,
            study_budget=tracker,
            slot=api_slot,
        )
        for agent in run.plan.agents
    ]


@task(
    name="claude-agent-round",
    cache_policy=NO_CACHE,
    task_run_name="claude-agent{agent.agent_id}-round{round_index}",
    **RETRY_OPTIONS,
)
def claude_round(agent: ClaudeAgent, round_index: int, gateway: ExperimentGateway) -> RoundOutcome:
    return agent.run_round(round_index, gateway)
