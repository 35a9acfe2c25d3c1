"""What the `claude` agent backend is configured with: model, request limits, retry pacing, prices
and budgets, and where the API key comes from.

Pure configuration: this module must not import the `anthropic` SDK, since the study config imports
`ClaudeSettings` and a study on the embedded backend should never load it.
"""

import os
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labgap.errors import LabgapInputError
from labgap.llm.budgets import Spend, _first_exceeded

API_KEY_ENV = "ANTHROPIC_API_KEY"

CLAUDE_MAX_SEEDS = 5
"""The most seeds a Claude agent may ask for one method. A study whose `quick_seeds` (the seeds a
method needs to be eligible to win) is above it could never have a winner, so its config is
refused."""


class ModelPrice(BaseModel):
    """US dollars per million tokens for one model.

    The defaults are Anthropic's list prices as we know them; check them against
    https://www.anthropic.com/pricing before trusting a $ budget, and override `prices` if yours
    differ (batch, regional or negotiated rates).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_write_per_mtok: float = Field(ge=0, description="5-minute cache writes")
    cache_read_per_mtok: float = Field(ge=0)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-opus-4-6": ModelPrice(
        input_per_mtok=5.0, output_per_mtok=25.0, cache_write_per_mtok=6.25, cache_read_per_mtok=0.5
    ),
}


class AgentBudget(BaseModel):
    """Limits for one agent over the whole study. Tokens count input, output, cache writes and
    cache reads alike; $ come from the price table."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_tokens_per_agent: int = Field(2_000_000, ge=1)
    max_usd_per_agent: float = Field(10.0, gt=0)
    max_tool_calls_per_agent: int = Field(200, ge=1)

    def exceeded_by(self, spend: Spend) -> str | None:
        """Why `spend` is over this budget, or None if it fits."""
        return _first_exceeded(
            spend,
            "agent",
            self.max_tokens_per_agent,
            self.max_usd_per_agent,
            self.max_tool_calls_per_agent,
        )


class StudyBudget(BaseModel):
    """Limits for all agents of one study together."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    max_tokens_per_study: int = Field(10_000_000, ge=1)
    max_usd_per_study: float = Field(50.0, gt=0)
    max_tool_calls_per_study: int = Field(1_000, ge=1)

    def exceeded_by(self, spend: Spend) -> str | None:
        return _first_exceeded(
            spend,
            "study",
            self.max_tokens_per_study,
            self.max_usd_per_study,
            self.max_tool_calls_per_study,
        )


class ClaudeSettings(BaseModel):
    """How the `claude` backend calls the Messages API, and what it may spend.

    There is no temperature: SDK 2.x sends `anthropic-version: 2026-10-21`, which rejects the
    sampling parameters (temperature, top_p, top_k) with a 400, and its `messages.create` no
    longer accepts them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field("claude-opus-4-6", min_length=1)
    max_tokens: int = Field(2048, ge=1, le=64_000, description="output tokens per API call")
    base_url: str | None = Field(None, description="None: the SDK default (or ANTHROPIC_BASE_URL)")
    max_concurrent_requests: int = Field(
        4, ge=1, le=64, description="requests in flight per process, unless the flow gates them"
    )
    request_timeout_seconds: float = Field(300.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=20, description="HTTP attempts per API call")
    backoff_base_seconds: float = Field(1.0, ge=0)
    backoff_cap_seconds: float = Field(60.0, ge=0)
    max_retry_after_seconds: float = Field(
        300.0, ge=0, description="a longer retry-after fails the call instead of stalling the study"
    )
    max_api_calls_per_round: int = Field(25, ge=1, description="per agent and round")
    max_context_tokens: int = Field(
        150_000,
        ge=1_000,
        description=(
            "an agent whose next request (estimated input plus max_tokens) would exceed this "
            "stops, before the API refuses it; keep it below the model's context window, since "
            "the estimate is rough"
        ),
    )
    forum_posts_shown: int = Field(
        10,
        ge=1,
        le=100,
        description="read_forum shows this many best posts, plus the agent's own latest",
    )
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))
    agent_budget: AgentBudget = AgentBudget()
    study_budget: StudyBudget = StudyBudget()

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if urlsplit(value).username is not None or urlsplit(value).password is not None:
            raise ValueError(
                "base_url must not carry credentials (user:password@): the key comes from "
                "ANTHROPIC_API_KEY only, and the config is stored with the study"
            )
        return value

    @model_validator(mode="after")
    def _check_priced(self) -> "ClaudeSettings":
        if self.model not in self.prices:
            raise ValueError(
                f"no price for model {self.model!r}: add it to `prices` so $ budgets can be enforced"
            )
        return self

    @property
    def price(self) -> ModelPrice:
        return self.prices[self.model]


def api_key_from_env() -> str:
    """The API key from the environment (its only source)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise LabgapInputError(
            f"{API_KEY_ENV} is not set: the claude agent backend needs an Anthropic API key in the "
            f"environment (export {API_KEY_ENV}=...), or use the embedded backend, which runs offline"
        )
    return key
