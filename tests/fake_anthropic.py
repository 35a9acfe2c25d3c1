"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 for tests with the real SDK.

It speaks the wire format (`POST /v1/messages`, JSON messages and errors), checks what the real
API would refuse (no credential, no `anthropic-version`, a tool_use without its tool_result) and
answers from a script: a list whose entries are `Reply`s or callables building one from the
request body, or a single callable for every request. Every request is recorded (credential
headers redacted) with the reply sent, so tests can count and inspect them. The SDK sends the key
as `Authorization: Bearer` (SDK 2.x) or `x-api-key`; both are accepted.

With `context_window`, a request whose tokens (`count_tokens`: a denser count than the agent's
own estimate, as a real tokenizer may give) plus `max_tokens` exceed it is refused with the real
API's 400, and `counted` makes a script report those tokens as the usage's input.

    with FakeAnthropic([message(text("hi"))], api_key=KEY) as server:
        client = anthropic.Anthropic(api_key=KEY, base_url=server.base_url, max_retries=0)
"""

import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREDENTIAL_HEADERS = ("x-api-key", "authorization")
DEFAULT_MODEL = "claude-opus-4-6"
CHARS_PER_TOKEN = 3
"""The fake's token count: denser than the agent's four-characters estimate, so the agent's
margin below the real window is what keeps its requests in."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer. `drop` closes the connection without answering (a network failure)."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    """Lower-cased names; credential values replaced by "<redacted>"."""
    body: dict[str, Any] | None
    reply: Reply
    scripted: bool
    """Whether the script answered (False: refused by the server's own checks)."""


Script = Sequence[Reply | Callable[[dict[str, Any]], Reply]] | Callable[[dict[str, Any]], Reply]

_ids = itertools.count(1)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(name: str, tool_input: dict[str, Any] | None, tool_id: str | None = None):
    """A tool_use block; `tool_input=None` leaves `input` out (a malformed block)."""
    block: dict[str, Any] = {"type": "tool_use", "id": tool_id or f"toolu_{next(_ids):04d}"}
    block["name"] = name
    if tool_input is not None:
        block["input"] = tool_input
    return block


def usage(input_tokens=100, output_tokens=50, cache_creation=0, cache_read=0) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": cache_creation,
        "cache_read_input_tokens": cache_read,
    }


def message(
    *blocks: dict[str, Any], usage_: dict[str, int] | None = None, stop_reason: str | None = None
) -> Reply:
    """A successful response; the stop reason follows from the blocks unless given."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    body = {
        "id": f"msg_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "model": DEFAULT_MODEL,
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage_ or usage(),
    }
    return _json_reply(200, body, {"request-id": f"req_{next(_ids):04d}"})


def error(status: int, kind: str, detail: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"type": "error", "error": {"type": kind, "message": detail}}
    return _json_reply(status, body, headers or {})


def rate_limited(retry_after: float) -> Reply:
    return error(429, "rate_limit_error", "rate limited", {"retry-after": f"{retry_after:g}"})


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded")


def server_error() -> Reply:
    return error(500, "api_error", "Internal server error")


def invalid_json() -> Reply:
    """Status 200 with a truncated JSON body."""
    return Reply(200, b'{"id": "msg_x", "type": "message", "content": [', _JSON)


def dropped_connection() -> Reply:
    return Reply(drop=True)


def count_tokens(body: dict[str, Any]) -> int:
    """The fake's count of a request's input tokens."""
    return len(json.dumps(body)) // CHARS_PER_TOKEN


def counted(script: Callable[[dict[str, Any]], Reply]) -> Callable[[dict[str, Any]], Reply]:
    """`script` with each successful reply's input tokens set to `count_tokens` of the request, as
    the real API reports them."""

    def reply(body: dict[str, Any]) -> Reply:
        answer = script(body)
        if answer.status != 200:
            return answer
        data = json.loads(answer.body)
        data["usage"]["input_tokens"] = count_tokens(body)
        return Reply(answer.status, json.dumps(data).encode(), answer.headers)

    return reply


_JSON = {"content-type": "application/json"}


def _json_reply(status: int, body: dict[str, Any], headers: dict[str, str]) -> Reply:
    return Reply(status, json.dumps(body).encode(), {**_JSON, **headers})


class FakeAnthropic:
    """The server; use as a context manager (it always stops) or call `start`/`stop`."""

    def __init__(
        self,
        script: Script,
        *,
        api_key: str,
        max_requests: int = 200,
        context_window: int | None = None,
        latency_seconds: float = 0.0,
    ):
        self.api_key = api_key
        self.latency_seconds = latency_seconds
        self.spans: list[tuple[float, float]] = []
        """(start, end) of every request on the monotonic clock: which requests overlapped."""
        self.max_requests = max_requests
        self.context_window = context_window
        self.requests: list[RecordedRequest] = []
        self._script = script
        self._next = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "FakeAnthropic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "FakeAnthropic":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def scripted_bodies(self) -> list[dict[str, Any]]:
        """Bodies of the requests the script answered, in order."""
        return [request.body for request in self.requests if request.scripted]

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        started = time.monotonic()
        time.sleep(self.latency_seconds)
        try:
            body = json.loads(raw)
        except ValueError:
            body, refusal = None, error(400, "invalid_request_error", "body is not JSON")
        else:
            refusal = self._check(path, headers, body)
        reply = refusal or self._scripted(body)
        with self._lock:
            self.requests.append(
                RecordedRequest(path, _redacted(headers), body, reply, scripted=refusal is None)
            )
            self.spans.append((started, time.monotonic()))
        return reply

    def _check(self, path: str, headers: dict[str, str], body: Any) -> Reply | None:
        """What the real API would refuse before the model runs."""
        if path != "/v1/messages":
            return error(404, "not_found_error", f"no route {path}")
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key not in (headers.get("x-api-key"), bearer):
            return error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return error(400, "invalid_request_error", "anthropic-version header is required")
        if len(self.requests) >= self.max_requests:
            return error(400, "invalid_request_error", "fake server: request limit reached")
        problem = conversation_problem(body)
        if problem is None and self.context_window is not None:
            tokens = count_tokens(body)
            if tokens + body["max_tokens"] > self.context_window:
                problem = (
                    f"prompt is too long: {tokens} tokens + max_tokens {body['max_tokens']} > "
                    f"{self.context_window} maximum"
                )
        return None if problem is None else error(400, "invalid_request_error", problem)

    def _scripted(self, body: dict[str, Any]) -> Reply:
        if callable(self._script):
            return self._script(body)
        with self._lock:
            index, self._next = self._next, self._next + 1
        if index >= len(self._script):
            return error(400, "invalid_request_error", "fake server: script exhausted")
        entry = self._script[index]
        return entry(body) if callable(entry) else entry

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {name.lower(): value for name, value in self.headers.items()}
                reply = server._answer(self.path, headers, raw)
                if reply.drop:
                    self.close_connection = True
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def conversation_problem(body: Any) -> str | None:
    """A request the real Messages API (version 2026-10-21) rejects: fields missing, sampling
    parameters, roles out of order, a tool_use not answered by a tool_result in the next message."""
    if not isinstance(body, dict):
        return "body must be an object"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: field required"
    for key in ("temperature", "top_p", "top_k"):
        if key in body:
            return f"{key}: Extra inputs are not permitted"
    messages = body["messages"]
    if not messages or messages[0]["role"] != "user":
        return "messages: the first message must use the user role"
    for index, (before, after) in enumerate(itertools.pairwise(messages)):
        if before["role"] == after["role"]:
            return f"messages.{index + 1}: roles must alternate"
    for index, msg in enumerate(messages):
        blocks = msg["content"] if isinstance(msg["content"], list) else []
        if any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return f"messages.{index}: text content blocks must be non-empty"
        asked = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if not asked:
            continue
        answer = messages[index + 1]["content"] if index + 1 < len(messages) else []
        answered = [b.get("tool_use_id") for b in answer if b.get("type") == "tool_result"]
        if set(asked) - set(answered):
            return f"messages.{index}: tool_use ids without tool_result blocks after them"
    return None


def _redacted(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: "<redacted>" if name in CREDENTIAL_HEADERS else value
        for name, value in headers.items()
    }


def researcher(body: dict) -> Reply:
    """A scripted Claude: per round it reads the method space and the forum, runs two methods
    picked from its agent id and the round, posts the better one and submits it. Stateless: it
    decides from the request alone, so several agents can share it concurrently."""
    agent_id = int(re.search(r"You are agent (\d+)", body["system"]).group(1))
    last = body["messages"][-1]["content"]
    prompt = next((b["text"] for b in last if b["type"] == "text"), None)
    if prompt is not None:
        return message(tool_use("describe_method_space", {}), tool_use("read_forum", {}))
    asked = {
        block["name"]: block
        for block in body["messages"][-2]["content"]
        if block["type"] == "tool_use"
    }
    results = {block["tool_use_id"]: json.loads(block["content"]) for block in last}
    if "read_forum" in asked:
        round_index = _round_of(body)
        methods = [
            {"loss": "logconf", "aux_weight": 0.2 + 0.1 * agent_id + 0.2 * round_index, "warmup": w}
            for w in (0.1, 0.2)
        ]
        return message(
            text("Trying two warmups."),
            tool_use("run_experiments", {"methods": methods, "n_seeds": 3}),
        )
    if "run_experiments" in asked:
        scored = results[asked["run_experiments"]["id"]]["results"]
        best = max(scored, key=lambda item: item["dev_pgr"])
        return message(
            tool_use("post_finding", {"method": best["method"], "rationale": "warmup 0.2 wins"})
        )
    if "post_finding" in asked:
        method = asked["post_finding"]["input"]["method"]
        return message(tool_use("submit_method", {"method": method, "rationale": "best so far"}))
    raise AssertionError(f"unexpected turn: {asked}")


def _round_of(body: dict) -> int:
    prompts = [
        block["text"]
        for msg in body["messages"]
        if msg["role"] == "user"
        for block in msg["content"]
        if block["type"] == "text"
    ]
    return int(re.match(r"Round (\d+)", prompts[-1]).group(1))


def forum_reader(rationale_chars: int, n_seeds: int) -> Callable[[dict[str, Any]], Reply]:
    """A scripted Claude that reads the forum in every response. Per round it runs a new method
    and re-asks last round's (free), posts the better with a long rationale, then submits it.
    Stateless, like `researcher`."""

    def method(agent_id: int, round_index: int) -> dict[str, Any]:
        return {"loss": "logconf", "aux_weight": (20 * agent_id + round_index) / 200, "warmup": 0.2}

    def reply(body: dict) -> Reply:
        agent_id = int(re.search(r"You are agent (\d+)", body["system"]).group(1))
        round_index = _round_of(body)
        note = f"Agent {agent_id}, round {round_index}: {'aux weight helps; ' * rationale_chars}"
        note = note[:rationale_chars]
        last = body["messages"][-1]["content"]
        if any(block["type"] == "text" for block in last):
            methods = [method(agent_id, r) for r in (round_index, round_index - 1) if r >= 0]
            experiments = {"methods": methods, "n_seeds": n_seeds}
            return message(tool_use("read_forum", {}), tool_use("run_experiments", experiments))
        asked = {
            block["name"]: block
            for block in body["messages"][-2]["content"]
            if block["type"] == "tool_use"
        }
        if "run_experiments" in asked:
            results = {block["tool_use_id"]: json.loads(block["content"]) for block in last}
            scored = results[asked["run_experiments"]["id"]]["results"]
            best = max(scored, key=lambda item: item["dev_pgr"])
            post = {"method": best["method"], "rationale": note}
            return message(tool_use("read_forum", {}), tool_use("post_finding", post))
        chosen = {"method": asked["post_finding"]["input"]["method"], "rationale": note}
        return message(tool_use("read_forum", {}), tool_use("submit_method", chosen))

    return reply
