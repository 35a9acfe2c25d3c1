"""The study's agents, for either backend, each running its rounds as `agent-round` task runs.

Claude requests pass through Prefect's global concurrency limit `anthropic-api`, so every study
running against one server shares one ceiling on concurrent requests; ops can change it in the UI.
"""

from functools import partial

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound

from labgap.plan import StudyPlan
from labgap.search.agent import Agent
from labgap.search.embedded import EmbeddedAgent
from labgap.store.connection import Store
from tasks.agents import TrackedAgent
from tasks.stages import quality_gate

API_LIMIT = "anthropic-api"


def study_agents(plan: StudyPlan, store: Store) -> list[Agent]:
    config = plan.config
    if config.agent_backend == "claude":
        return [TrackedAgent(agent, retried=True) for agent in claude_agents(plan, store)]
    return [
        TrackedAgent(
            EmbeddedAgent(
                agent.agent_id,
                agent.direction,
                agent.sampler_seed,
                proposals_per_round=config.proposals_per_round,
                scoring_budget=config.budget,
            ),
            retried=False,
        )
        for agent in plan.agents
    ]


def api_slot():
    return concurrency(API_LIMIT, occupy=1, strict=True)


def claude_agents(plan: StudyPlan, store: Store) -> list[Agent]:
    """The study's Claude agents, with the spend already recorded for this study counted."""
    from labgap.llm.budgets import StudyBudgetTracker
    from labgap.llm.settings import api_key_from_env
    from labgap.search.claude.agent import ClaudeAgent
    from labgap.search.claude.transcript import recorded_spend
    from labgap.store.conversation import DuckDBConversationLog

    api_key_from_env()
    settings = plan.config.claude
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(API_LIMIT)
        except ObjectNotFound:
            client.upsert_global_concurrency_limit_by_name(
                API_LIMIT, settings.max_concurrent_requests
            )
    log = DuckDBConversationLog(store, plan.study_id, partial(quality_gate, study_id=plan.study_id))
    agent_ids = [agent.agent_id for agent in plan.agents]
    tracker = StudyBudgetTracker(settings.study_budget, spent=recorded_spend(log, agent_ids))
    lab = plan.lab.spec
    return [
        ClaudeAgent(
            agent.agent_id,
            agent.direction,
            settings,
            log,
            task_description=lab.description or lab.name,
            study_budget=tracker,
            min_seeds=plan.config.quick_seeds,
            slot=api_slot,
            allow_unsandboxed_programs=plan.config.allow_unsandboxed_programs,
        )
        for agent in plan.agents
    ]
