"""The boundary between the study and its agents, shared by every agent backend.

Agents only ever exchange these models with the pipeline: they propose validated methods, get back
the mean dev-split PGR of each (never labels, never test scores) and post findings to a forum every
agent reads next round.
"""

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from labgap.methods.kinds import Method
from labgap.search.directions import ResearchDirection
from labgap.search.scoring import ScoringCall


class Proposal(BaseModel):
    """One method an agent asks the pipeline to run, with why it chose it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int = Field(ge=0)
    round: int = Field(ge=0)
    method: Method
    rationale: str = Field(min_length=1)


class ForumPost(BaseModel):
    """An agent's finding, read by all agents next round. The score comes from the pipeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    round: int = Field(ge=0)
    agent_id: int = Field(ge=0)
    method: Method
    dev_pgr: float | None = Field(description="mean dev-split PGR; None when undefined")
    n_seeds: int = Field(ge=0, description="seeds the mean is over")
    rationale: str = Field(min_length=1)


class ScoredMethod(BaseModel):
    """A method the pipeline scored for an agent, with the only number the agent got back."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    round: int = Field(ge=0)
    method: Method
    dev_pgr: float | None
    n_seeds: int = Field(ge=1)


class RoundOutcome(BaseModel):
    """What one agent did in one round. `stop_reason` is None when the round ended normally."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int
    round: int
    submitted: Method | None = None
    rationale: str | None = None
    scored: list[ScoredMethod]
    posts: list[ForumPost] = Field(description="what the agent posts to the forum this round")
    stop_reason: str | None
    out_of_budget: bool = Field(description="a budget ended the agent's work: it stops for good")
    api_calls: int = Field(0, description="LLM API calls made in this round, resumed ones included")


class Lab(Protocol):
    """The guarded scorer, as agents reach it: dev-split PGR of methods the pipeline itself runs."""

    def score(
        self, agent_id: int, round: int, methods: list[Method], n_seeds: int | None = None
    ) -> list[ScoringCall]:
        """One call per method, in order: the mean dev PGR over the pipeline's own trials on
        `n_seeds` search seeds (None: the study's minimum). A method already scored for this agent
        on the same seeds, in any round, is answered from the record, free. Raises
        `BudgetExhausted`, scoring nothing, when the agent's budget cannot cover the new
        methods."""
        ...

    def charge(self, method: Method) -> int:
        """Dev-scoring calls scoring `method` anew costs, known before it runs (a program's is a
        minimum: it is charged by the CPU seconds it used)."""
        ...


@runtime_checkable
class Agent(Protocol):
    """What the search stage needs from an agent backend (embedded optimiser or LLM)."""

    agent_id: int
    direction: ResearchDirection

    def run_round(self, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
        """One round of research. `forum` is the forum as it was when the round began, the same
        for every agent of the round; every number comes from `lab`."""
        ...
