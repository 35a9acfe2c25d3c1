"""Calling the Messages API for the `claude` agent backend: the SDK client, our retry policy, the
validated response and the cost row each call leaves.

The retry policy is ours, not the SDK's (the client is built with `max_retries=0`), so every
attempt is counted, logged and paced by one rule: retry what can heal (429, 5xx, 529 overloaded,
connection errors, malformed bodies) with exponential backoff and jitter, honouring the server's
`retry-after`; fail at once, with a message saying what to fix, on what cannot (400, 401, 403, 404
and other 4xx). The API key is read from `ANTHROPIC_API_KEY` and handed to the SDK only: it is
never stored on our objects, logged or put into an error message. A call that fails after the API
billed malformed responses says what they cost (`CallFailed.billed`), so the caller can record it.
"""

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import anthropic
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labgap.errors import LabgapInputError
from labgap.llm.budgets import NO_USAGE, Spend, Usage
from labgap.llm.settings import API_KEY_ENV, ClaudeSettings, api_key_from_env

logger = logging.getLogger(__name__)


def make_client(settings: ClaudeSettings, api_key: str | None = None) -> anthropic.Anthropic:
    """An SDK client with its own retries off, so `call_with_retries` owns the policy."""
    return anthropic.Anthropic(
        api_key=api_key or api_key_from_env(),
        base_url=settings.base_url,
        max_retries=0,
        timeout=settings.request_timeout_seconds,
    )


class LLMCall(BaseModel):
    """One API call of one agent: a row of the `llm_calls` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int = Field(ge=0)
    round: int = Field(ge=0)
    turn: int = Field(ge=0, description="index of the call within the agent's conversation")
    model: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cache_creation_input_tokens: int = Field(ge=0)
    cache_read_input_tokens: int = Field(ge=0)
    latency_seconds: float = Field(ge=0, description="of the attempt that succeeded (0: none did)")
    stop_reason: str | None = Field(
        description="the API's; None when no attempt gave a usable response (billed tokens only)"
    )
    usd: float = Field(ge=0)
    attempts: int = Field(ge=1, description="HTTP attempts, retries included")
    request_id: str | None

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
        )

    @property
    def spend(self) -> Spend:
        return Spend(tokens=self.usage.total_tokens, usd=self.usd)


class MessageResponse(BaseModel):
    """A Messages API response, validated by us from the raw body so the exact content blocks can
    be stored and re-sent. Text and tool_use blocks must be complete; other block types pass
    through untouched."""

    model_config = ConfigDict(frozen=True)
    id: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage = Field(
        description="tokens billed for this call, including any malformed attempts discarded"
    )
    request_id: str | None = None

    @field_validator("content")
    @classmethod
    def _check_blocks(cls, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, block in enumerate(blocks):
            kind = block.get("type")
            if kind == "text" and not isinstance(block.get("text"), str):
                raise ValueError(f"content[{index}]: text block without a string `text`")
            if kind == "tool_use":
                for key, expected in (("id", str), ("name", str), ("input", dict)):
                    if not isinstance(block.get(key), expected):
                        raise ValueError(
                            f"content[{index}]: tool_use block without a valid `{key}`"
                        )
            if not isinstance(kind, str):
                raise ValueError(f"content[{index}]: block without a `type`")
        return blocks

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]


class CallResult(NamedTuple):
    response: MessageResponse
    attempts: int
    latency_seconds: float


class CallFailed(Exception):
    """A call that got no usable response. `billed` is what its malformed responses still cost
    (the API charged for them), `attempts` how many HTTP attempts were made."""

    def __init__(
        self,
        message: str,
        billed: Usage = NO_USAGE,
        attempts: int = 1,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.billed = billed
        self.attempts = attempts
        self.request_id = request_id


class AnthropicRequestRejected(CallFailed, LabgapInputError):
    """The API refused the request itself (bad key, bad request, no access): retrying cannot help."""


class AnthropicUnavailable(CallFailed, RuntimeError):
    """The API kept failing with retryable errors; a later run (the flow's retry) may succeed."""


NEVER_RETRIED_HINTS = {
    400: "the request is invalid (check the model name and max_tokens)",
    401: f"check {API_KEY_ENV}",
    403: "this key has no access to the model or the API",
    404: "unknown model or wrong base_url",
}

_default_slots: dict[int, threading.BoundedSemaphore] = {}
_default_slots_lock = threading.Lock()


def default_slot(max_concurrent_requests: int) -> Callable[[], AbstractContextManager]:
    """A process-wide gate on requests in flight, shared by every caller with the same limit."""
    with _default_slots_lock:
        semaphore = _default_slots.setdefault(
            max_concurrent_requests, threading.BoundedSemaphore(max_concurrent_requests)
        )
    return lambda: semaphore


def call_with_retries(
    client: anthropic.Anthropic,
    request: dict,
    settings: ClaudeSettings,
    sleep: Callable[[float], None] = time.sleep,
    slot: Callable[[], AbstractContextManager] | None = None,
) -> CallResult:
    """Send one Messages API request under our retry policy (see the module docstring).

    A 200 whose body is not valid JSON or lacks required fields (e.g. a tool_use without its
    input) is retried like a 5xx: a fresh sample usually fixes it, and a broken block must never
    enter the conversation. Tokens such a body reports are still added to the result's usage,
    since they were billed, or to the raised `CallFailed.billed` when no attempt succeeds.
    `slot()` gates each attempt (not the waits between attempts).
    """
    if client.max_retries != 0:
        client = client.with_options(max_retries=0)
    gate = slot or default_slot(settings.max_concurrent_requests)
    discarded = NO_USAGE
    problem = ""
    billed_id = None
    for attempt in range(1, settings.max_attempts + 1):
        try:
            with gate():
                started = time.monotonic()
                raw = client.messages.with_raw_response.create(**request)
                body = raw.http_response.content
                latency = time.monotonic() - started
            request_id = raw.headers.get("request-id")
            response, problem, usage = _parse_response(body, request_id)
            if response is not None:
                billed = response.model_copy(update={"usage": response.usage + discarded})
                return CallResult(billed, attempt, latency)
            discarded = discarded + usage
            billed_id = request_id if usage.total_tokens else billed_id
            wait = _backoff(attempt, settings)
        except anthropic.APIStatusError as error:
            problem = _describe_status_error(error)
            if not _is_retryable(error.status_code):
                hint = NEVER_RETRIED_HINTS.get(error.status_code, "fix the request")
                raise AnthropicRequestRejected(
                    f"Anthropic API rejected the request ({problem}): {hint}",
                    discarded,
                    attempt,
                    billed_id,
                ) from None
            retry_after = _retry_after_seconds(error.response.headers)
            if retry_after is not None and retry_after > settings.max_retry_after_seconds:
                raise AnthropicUnavailable(
                    f"Anthropic API asked to retry after {retry_after:g} s ({problem}), more than "
                    f"max_retry_after_seconds={settings.max_retry_after_seconds:g}; "
                    "try again later",
                    discarded,
                    attempt,
                    billed_id,
                ) from None
            if retry_after is None:
                wait = _backoff(attempt, settings)
            else:
                wait = retry_after * random.uniform(1.0, 1.1)
        except anthropic.APIConnectionError as error:
            problem = f"connection error: {type(error).__name__}"
            wait = _backoff(attempt, settings)
        if attempt < settings.max_attempts:
            logger.warning(
                "Anthropic API call failed (%s); retrying in %.1f s (attempt %d of %d)",
                problem,
                wait,
                attempt + 1,
                settings.max_attempts,
            )
            sleep(wait)
    raise AnthropicUnavailable(
        f"Anthropic API still failing after {settings.max_attempts} attempts; last: {problem}",
        discarded,
        settings.max_attempts,
        billed_id,
    )


def _is_retryable(status: int) -> bool:
    return status == 408 or status == 429 or status >= 500


def _describe_status_error(error: anthropic.APIStatusError) -> str:
    """Status, error type and the server's message; never the request (it carries the key)."""
    kind = error.type or "error"
    message = f": {error.api_message}" if error.api_message else ""
    return f"{error.status_code} {kind}{message}"


def _retry_after_seconds(headers: Any) -> float | None:
    value = headers.get("retry-after")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return max(seconds, 0.0)


def _backoff(attempt: int, settings: ClaudeSettings) -> float:
    """Exponential backoff with jitter in [50%, 100%], so agents retrying together spread out."""
    ceiling = min(settings.backoff_cap_seconds, settings.backoff_base_seconds * 2 ** (attempt - 1))
    return ceiling * random.uniform(0.5, 1.0)


def _parse_response(
    body: bytes, request_id: str | None
) -> tuple[MessageResponse | None, str, Usage]:
    """The validated response, or None with what is wrong and whatever usage could be read."""
    try:
        data = json.loads(body)
    except ValueError:
        return None, f"malformed response: not JSON ({len(body)} bytes)", NO_USAGE
    if not isinstance(data, dict):
        return None, "malformed response: not a JSON object", NO_USAGE
    try:
        return MessageResponse.model_validate({**data, "request_id": request_id}), "", NO_USAGE
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "value_error":
            detail = str(first["ctx"]["error"])
        else:
            detail = ".".join(str(part) for part in first["loc"]) + f": {first['msg']}"
        try:
            usage = Usage.model_validate(data.get("usage"))
        except ValidationError:
            usage = NO_USAGE
        return None, f"malformed response: {detail}", usage
