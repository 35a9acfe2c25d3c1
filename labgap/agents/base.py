"""The boundary between the study and its agents, shared by every agent backend.

Agents only ever exchange these models with the pipeline: they propose validated methods, get back
the mean dev-split PGR of each (never labels, never test scores) and post findings to a forum every
agent reads next round.
"""

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from labgap.directions import ResearchDirection
from labgap.methods import MethodSpec


class Proposal(BaseModel):
    """One method an agent asks the pipeline to run, with why it chose it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int = Field(ge=0)
    round: int = Field(ge=0)
    method: MethodSpec
    rationale: str = Field(min_length=1)


class ForumPost(BaseModel):
    """An agent's finding, read by all agents next round. The score comes from the pipeline."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    round: int = Field(ge=0)
    agent_id: int = Field(ge=0)
    method: MethodSpec
    dev_pgr: float | None = Field(description="mean dev-split PGR; None when undefined")
    n_seeds: int = Field(ge=0, description="seeds the mean is over")
    rationale: str = Field(min_length=1)


@runtime_checkable
class Agent(Protocol):
    """What the study needs from an agent backend (embedded optimiser or LLM)."""

    agent_id: int
    direction: ResearchDirection

    def propose(self, round: int, n: int, forum: list[ForumPost]) -> list[Proposal]:
        """Up to `n` new methods (never one proposed before); fewer if it has run out of ideas."""
        ...

    def observe(self, proposal: Proposal, dev_pgr: float | None, n_seeds: int) -> None:
        """The pipeline's mean dev PGR for one of this agent's proposals (None: undefined)."""
        ...

    def finding(self, round: int) -> ForumPost | None:
        """The best method so far with its dev PGR; None if nothing has been scored yet."""
        ...


def describe_method(method: MethodSpec) -> str:
    """A compact, human-readable method: its loss, then every field not at its default."""
    defaults = MethodSpec()
    parts = [method.loss]
    for name in MethodSpec.model_fields:
        value = getattr(method, name)
        if name == "loss" or value == getattr(defaults, name):
            continue
        if isinstance(value, bool):
            parts.append(name)
        elif isinstance(value, float):
            parts.append(f"{name}={value:.3g}")
        else:
            parts.append(f"{name}={value}")
    return " ".join(parts)
