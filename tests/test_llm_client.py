"""The retry policy of `labgap.llm.client`, against the fake Messages API over real HTTP with the
real SDK."""

import contextlib
import logging
import secrets
import traceback

import anthropic
import pytest
from fake_anthropic import (
    FakeAnthropic,
    dropped_connection,
    error,
    invalid_json,
    message,
    overloaded,
    rate_limited,
    server_error,
    text,
    tool_use,
    usage,
)

from labgap.errors import LabgapInputError
from labgap.llm.budgets import Usage
from labgap.llm.client import (
    AnthropicRequestRejected,
    AnthropicUnavailable,
    call_with_retries,
    make_client,
)
from labgap.llm.settings import ClaudeSettings

REQUEST = {
    "model": "claude-opus-4-6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
}


@pytest.fixture
def api_key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def call(server: FakeAnthropic, key: str, sleeps: list[float], **overrides):
    settings = ClaudeSettings(base_url=server.base_url, request_timeout_seconds=10, **overrides)
    client = make_client(settings, api_key=key)
    return call_with_retries(client, REQUEST, settings, sleep=sleeps.append)


def test_success_returns_the_exact_content_and_usage(api_key, sleeps):
    reply = message(text("hi"), tool_use("read_forum", {}), usage_=usage(7, 3, 11, 13))
    with FakeAnthropic([reply], api_key=api_key) as server:
        result = call(server, api_key, sleeps)
    assert result.attempts == 1 and sleeps == []
    assert result.response.content == [
        {"type": "text", "text": "hi"},
        {
            "type": "tool_use",
            "id": result.response.tool_uses[0]["id"],
            "name": "read_forum",
            "input": {},
        },
    ]
    assert result.response.stop_reason == "tool_use"
    assert result.response.usage == Usage(
        input_tokens=7, output_tokens=3, cache_creation_input_tokens=11, cache_read_input_tokens=13
    )
    assert result.response.request_id == reply.headers["request-id"]
    (request,) = server.requests
    assert request.headers["anthropic-version"]
    assert request.headers["authorization"] == "<redacted>"
    assert request.body == REQUEST


def test_429_honours_retry_after(api_key, sleeps):
    with FakeAnthropic([rate_limited(2.5), message(text("ok"))], api_key=api_key) as server:
        result = call(server, api_key, sleeps)
    assert result.attempts == 2
    assert len(sleeps) == 1 and 2.5 <= sleeps[0] <= 2.75
    # The SDK's own retries are off: each attempt is a first try as far as the SDK knows.
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "0"]


@pytest.mark.parametrize("failure", [overloaded(), server_error(), dropped_connection()])
def test_overloaded_server_errors_and_dropped_connections_are_retried(failure, api_key, sleeps):
    with FakeAnthropic([failure, message(text("ok"))], api_key=api_key) as server:
        result = call(server, api_key, sleeps, backoff_base_seconds=2.0)
    assert result.attempts == 2 and len(server.requests) == 2
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 2.0  # base 2 s with jitter in [50%, 100%]


def test_backoff_grows_exponentially_up_to_the_cap_then_fails_clearly(api_key, sleeps):
    with (
        FakeAnthropic([overloaded()] * 5, api_key=api_key) as server,
        pytest.raises(AnthropicUnavailable, match=r"after 5 attempts; last: 529 overloaded"),
    ):
        call(server, api_key, sleeps, max_attempts=5, backoff_cap_seconds=3.0)
    assert len(server.requests) == 5
    ceilings = [1.0, 2.0, 3.0, 3.0]
    assert all(c / 2 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))


def test_a_client_with_sdk_retries_gets_them_turned_off(api_key, sleeps):
    settings = ClaudeSettings(max_attempts=2)
    with FakeAnthropic([server_error()] * 5, api_key=api_key) as server:
        client = anthropic.Anthropic(api_key=api_key, base_url=server.base_url, max_retries=3)
        with pytest.raises(AnthropicUnavailable):
            call_with_retries(client, REQUEST, settings, sleep=sleeps.append)
    assert len(server.requests) == 2


def test_401_fails_at_once_with_a_clear_message_and_no_key(api_key, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    with (
        FakeAnthropic([message(text("never"))], api_key="sk-ant-other") as server,
        pytest.raises(AnthropicRequestRejected) as raised,
    ):
        call(server, api_key, sleeps)
    assert isinstance(raised.value, LabgapInputError)
    assert str(raised.value) == (
        "Anthropic API rejected the request (401 authentication_error: invalid x-api-key): "
        "check ANTHROPIC_API_KEY"
    )
    assert len(server.requests) == 1 and sleeps == []
    shown = "".join(traceback.format_exception(raised.value))
    assert api_key not in shown and api_key not in caplog.text


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (403, "permission_error"), (404, "not_found_error")],
)
def test_client_errors_are_never_retried(status, kind, api_key, sleeps):
    with (
        FakeAnthropic([error(status, kind, "nope")], api_key=api_key) as server,
        pytest.raises(AnthropicRequestRejected, match=f"{status} {kind}: nope"),
    ):
        call(server, api_key, sleeps)
    assert len(server.requests) == 1 and sleeps == []


def test_a_huge_retry_after_fails_instead_of_stalling(api_key, sleeps):
    with (
        FakeAnthropic([rate_limited(3600)], api_key=api_key) as server,
        pytest.raises(AnthropicUnavailable, match="retry after 3600 s"),
    ):
        call(server, api_key, sleeps, max_retry_after_seconds=60)
    assert sleeps == []


def test_invalid_json_with_status_200_is_retried(api_key, sleeps):
    with FakeAnthropic([invalid_json(), message(text("ok"))], api_key=api_key) as server:
        result = call(server, api_key, sleeps)
    assert result.attempts == 2 and len(server.requests) == 2
    assert result.response.content == [{"type": "text", "text": "ok"}]


def test_a_tool_use_without_input_is_retried_and_its_tokens_still_billed(api_key, sleeps):
    broken = message(tool_use("run_experiments", None), usage_=usage(100, 20))
    good = message(text("ok"), usage_=usage(100, 5))
    with FakeAnthropic([broken, good], api_key=api_key) as server:
        result = call(server, api_key, sleeps)
    assert result.attempts == 2
    assert result.response.usage == Usage(input_tokens=200, output_tokens=25)


def test_malformed_responses_until_the_last_attempt_fail_clearly_with_what_they_cost(
    api_key, sleeps
):
    broken = [message(tool_use("x", None), usage_=usage(100, 20, cache_read=7))] * 3
    with (
        FakeAnthropic(broken, api_key=api_key) as server,
        pytest.raises(
            AnthropicUnavailable,
            match=r"malformed response: content\[0\]: tool_use block without a valid `input`",
        ) as raised,
    ):
        call(server, api_key, sleeps, max_attempts=3)
    assert len(server.requests) == 3
    assert raised.value.billed == Usage(
        input_tokens=300, output_tokens=60, cache_read_input_tokens=21
    )
    assert raised.value.attempts == 3
    assert raised.value.request_id == server.requests[-1].reply.headers["request-id"]


def test_a_rejection_after_a_billed_malformed_response_still_reports_its_cost(api_key, sleeps):
    script = [message(tool_use("x", None), usage_=usage(100, 20)), error(400, "x", "too long")]
    with (
        FakeAnthropic(script, api_key=api_key) as server,
        pytest.raises(AnthropicRequestRejected) as raised,
    ):
        call(server, api_key, sleeps)
    assert raised.value.billed == Usage(input_tokens=100, output_tokens=20)
    assert raised.value.attempts == 2 and len(server.requests) == 2
    assert isinstance(raised.value, LabgapInputError)


def test_every_attempt_passes_through_the_callers_slot(api_key, sleeps):
    entered = []

    @contextlib.contextmanager
    def slot():
        entered.append(True)
        yield

    settings = ClaudeSettings(base_url=None)
    with FakeAnthropic([server_error(), message(text("ok"))], api_key=api_key) as server:
        client = anthropic.Anthropic(api_key=api_key, base_url=server.base_url, max_retries=0)
        call_with_retries(client, REQUEST, settings, sleep=sleeps.append, slot=slot)
    assert len(entered) == 2
