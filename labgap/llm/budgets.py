"""What calls to Claude cost and what they may spend: token usage, its price in dollars, spend
estimates checked before a call is sent, and the study-wide budget shared by concurrent agents."""

import json
import threading
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from labgap.llm.settings import ClaudeSettings, ModelPrice, StudyBudget

CHARS_PER_TOKEN = 4
"""A rough size of a token, used only to estimate a request's input before it is sent."""


class Spend(BaseModel):
    """What an agent or a study has used (or would use): tokens of every kind, $, tool calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    tokens: int = 0
    usd: float = 0.0
    tool_calls: int = 0

    def __add__(self, other: "Spend") -> "Spend":
        return Spend(
            tokens=self.tokens + other.tokens,
            usd=self.usd + other.usd,
            tool_calls=self.tool_calls + other.tool_calls,
        )

    def __sub__(self, other: "Spend") -> "Spend":
        return Spend(
            tokens=self.tokens - other.tokens,
            usd=self.usd - other.usd,
            tool_calls=self.tool_calls - other.tool_calls,
        )


def _first_exceeded(
    spend: Spend, scope: str, max_tokens: int, max_usd: float, max_tool_calls: int
) -> str | None:
    if spend.tokens > max_tokens:
        return f"{scope} token budget ({max_tokens:,} tokens) reached"
    if spend.usd > max_usd:
        return f"{scope} $ budget (${max_usd:,.2f}) reached"
    if spend.tool_calls > max_tool_calls:
        return f"{scope} tool-call budget ({max_tool_calls:,} calls) reached"
    return None


class Usage(BaseModel):
    """Token counts as the Messages API reports them (missing cache counts are 0)."""

    model_config = ConfigDict(frozen=True)
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cache_creation_input_tokens: int = Field(0, ge=0)
    cache_read_input_tokens: int = Field(0, ge=0)

    @field_validator("cache_creation_input_tokens", "cache_read_input_tokens", mode="before")
    @classmethod
    def _none_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


NO_USAGE = Usage(input_tokens=0, output_tokens=0)


def cost_usd(usage: Usage, price: "ModelPrice") -> float:
    return (
        usage.input_tokens * price.input_per_mtok
        + usage.output_tokens * price.output_per_mtok
        + usage.cache_creation_input_tokens * price.cache_write_per_mtok
        + usage.cache_read_input_tokens * price.cache_read_per_mtok
    ) / 1_000_000


def estimate_input_tokens(request: dict) -> int:
    """A request's input tokens, guessed from its size at about four characters a token."""
    return len(json.dumps(request)) // CHARS_PER_TOKEN


def estimate_spend(request: dict, settings: "ClaudeSettings") -> Spend:
    """A cautious guess of one call's spend, checked against budgets before it is sent: the
    request's estimated input, priced as uncached input, plus a full `max_tokens` of output. A
    budget can still be overshot by this guess's error on the last call."""
    usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=settings.max_tokens)
    return Spend(tokens=usage.total_tokens, usd=cost_usd(usage, settings.price))


def context_overflow(request: dict, floor: int, settings: "ClaudeSettings") -> str | None:
    """Why `request` may not fit the model's context, or None: its estimated input (at least
    `floor` tokens, a size known from the API's own count) plus a full `max_tokens` of output must
    stay within `max_context_tokens`, whose margin below the real window absorbs the estimate's
    error. An agent stops on it instead of sending a request the API would refuse."""
    needed = max(estimate_input_tokens(request), floor) + settings.max_tokens
    limit = settings.max_context_tokens
    if needed > limit:
        return (
            f"the next request (~{needed:,} tokens with max_tokens) would exceed "
            f"max_context_tokens ({limit:,})"
        )
    return None


class StudyBudgetTracker:
    """The study's budget, shared by its agents across threads.

    Agents reserve a call's estimated spend before sending it and settle the actual spend after,
    so concurrent agents cannot jointly overshoot. A resumed study seeds `spent` with what its
    recorded calls already used.
    """

    def __init__(self, budget: "StudyBudget", spent: Spend | None = None):
        self.budget = budget
        self._spent = spent or Spend()
        self._reserved = Spend()
        self._lock = threading.Lock()

    @property
    def spent(self) -> Spend:
        with self._lock:
            return self._spent

    def reserve(self, estimate: Spend) -> str | None:
        """Reserve `estimate`; returns why it does not fit (nothing reserved) or None."""
        with self._lock:
            reason = self.budget.exceeded_by(self._spent + self._reserved + estimate)
            if reason is None:
                self._reserved = self._reserved + estimate
            return reason

    def settle(self, estimate: Spend, actual: Spend) -> None:
        """Replace a reservation by what was really spent."""
        with self._lock:
            self._reserved = self._reserved - estimate
            self._spent = self._spent + actual
