"""One Prefect task per agent per round, so the run graph shows who researched when.

A Claude round is retried on transient failures: it resumes from its stored conversation without
repeating a paid call. An embedded round is not: its optimiser has already moved on.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from labgap.search.agent import Agent, ForumPost, Lab, RoundOutcome
from labgap.search.directions import ResearchDirection
from tasks.retry import RETRY_OPTIONS


@task(
    name="agent-round",
    cache_policy=NO_CACHE,
    task_run_name="agent{agent.agent_id}-round{round}",
)
def agent_round(agent: Agent, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
    return agent.run_round(round, forum, lab)


class TrackedAgent:
    """An agent whose rounds run as `agent-round` task runs (with retries when `retried`)."""

    def __init__(self, agent: Agent, retried: bool):
        self.agent = agent
        self.agent_id: int = agent.agent_id
        self.direction: ResearchDirection = agent.direction
        self._round = agent_round.with_options(**RETRY_OPTIONS) if retried else agent_round

    def run_round(self, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
        return self._round(self.agent, round, forum, lab)
