"""The `claude` agent backend: each agent is one Claude conversation with tools, across rounds.

Claude wants experiment results inside its conversation, so instead of the embedded agents'
propose/observe batches it gets an `ExperimentGateway` from the flow and calls the pipeline
through tools. The guarantees are the embedded agents': the agent never sees labels or runs code,
it only chooses validated `MethodSpec`s, and every number it sees or posts is the pipeline's.

Every message (round prompt, model response, tool results) is appended to a `ConversationLog` as
it happens and every API call is recorded, so a crashed round resumes from the log: the
conversation is rebuilt, a stored response whose tools were not answered yet gets its tools run
again (pipeline-side and free) and no request whose response is stored is ever sent again. The
agent's own state (scored methods, posts, submissions, tool calls) is always replayed from the
JSON tool results it stored, so live runs and resumed runs share one code path.
"""

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

import anthropic
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labgap.agents.base import ForumPost, describe_method
from labgap.directions import ResearchDirection
from labgap.llm import (
    AgentBudget,
    ClaudeSettings,
    LLMCall,
    Spend,
    StudyBudgetTracker,
    call_with_retries,
    cost_usd,
    estimate_spend,
    make_client,
)
from labgap.methods import PRESETS, MethodSpec
from labgap.scoring import BudgetExhausted

logger = logging.getLogger(__name__)

MAX_METHODS_PER_CALL = 5
MAX_SEEDS = 5
MAX_RATIONALE_CHARS = 2000


class StoredMessage(BaseModel):
    """One message of an agent's conversation, exactly as sent or received: a row of the
    `agent_messages` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int = Field(ge=0)
    round: int = Field(ge=0)
    seq: int = Field(ge=0, description="position in the agent's conversation")
    role: Literal["user", "assistant"]
    content_json: str = Field(description="the message's content blocks as JSON")
    kind: Literal["prompt", "model", "tool_results"]

    @property
    def content(self) -> list[dict[str, Any]]:
        return json.loads(self.content_json)

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [block for block in self.content if block.get("type") == "tool_use"]


class ConversationLog(Protocol):
    """Durable storage of conversations and API calls (the flow implements it on DuckDB)."""

    def messages(self, agent_id: int) -> list[StoredMessage]:
        """Everything stored for the agent so far, in `seq` order."""
        ...

    def append(self, message: StoredMessage) -> None: ...

    def record_call(self, call: LLMCall) -> None: ...

    def calls(self, agent_id: int) -> list[LLMCall]:
        """The agent's recorded API calls, in `turn` order."""
        ...


class MemoryConversationLog:
    """A `ConversationLog` in memory (tests, and runs that need no resume)."""

    def __init__(self) -> None:
        self._messages: dict[int, list[StoredMessage]] = {}
        self._calls: dict[int, list[LLMCall]] = {}
        self._lock = threading.Lock()

    def messages(self, agent_id: int) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages.get(agent_id, []))

    def append(self, message: StoredMessage) -> None:
        with self._lock:
            stored = self._messages.setdefault(message.agent_id, [])
            if message.seq != len(stored):
                raise ValueError(
                    f"agent {message.agent_id}: message seq {message.seq} after {len(stored)} stored"
                )
            stored.append(message)

    def record_call(self, call: LLMCall) -> None:
        with self._lock:
            self._calls.setdefault(call.agent_id, []).append(call)

    def calls(self, agent_id: int) -> list[LLMCall]:
        with self._lock:
            return list(self._calls.get(agent_id, []))


class ExperimentGateway(Protocol):
    """The pipeline, as the flow exposes it to Claude agents."""

    def run_experiments(
        self, agent_id: int, round: int, methods: list[MethodSpec], n_seeds: int
    ) -> list[float | None]:
        """Mean dev PGR per method from the guarded scorer (None: undefined). Raises
        `BudgetExhausted`, scoring nothing, when the agent's dev-scoring budget cannot cover
        all of `methods`."""
        ...

    def read_forum(self) -> list[ForumPost]: ...


class ScoredMethod(BaseModel):
    """A method the pipeline scored for this agent, with the only number the agent got back."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    round: int = Field(ge=0)
    method: MethodSpec
    dev_pgr: float | None
    n_seeds: int = Field(ge=1)


class RoundOutcome(BaseModel):
    """What one agent did in one round. `stop_reason` is None when it submitted a method."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    agent_id: int
    round: int
    submitted: MethodSpec | None
    rationale: str | None
    scored: list[ScoredMethod]
    posts: list[ForumPost]
    stop_reason: str | None
    out_of_budget: bool = Field(
        description="a token, $, tool-call or context budget ended the agent's work"
    )
    api_calls: int = Field(description="API calls made in this round, resumed ones included")


class RunExperimentsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[MethodSpec] = Field(min_length=1, max_length=MAX_METHODS_PER_CALL)
    n_seeds: int = Field(ge=1, le=MAX_SEEDS)


class MethodChoiceInput(BaseModel):
    """The input of `post_finding` and `submit_method`."""

    model_config = ConfigDict(extra="forbid")
    method: MethodSpec
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE_CHARS)


def tool_definitions() -> list[dict[str, Any]]:
    """The tools' JSON schemas; MethodSpec's schema is inlined so the model sees every range."""
    method = MethodSpec.model_json_schema()
    choice = {
        "type": "object",
        "properties": {
            "method": method,
            "rationale": {"type": "string", "minLength": 1, "maxLength": MAX_RATIONALE_CHARS},
        },
        "required": ["method", "rationale"],
        "additionalProperties": False,
    }
    no_input = {"type": "object", "properties": {}, "additionalProperties": False}
    return [
        {
            "name": "describe_method_space",
            "description": (
                "The method space: the JSON schema of a method (every field, its range and "
                "meaning) and the named presets. Free."
            ),
            "input_schema": no_input,
        },
        {
            "name": "run_experiments",
            "description": (
                "Have the pipeline train and score methods: each method runs on n_seeds seeds of "
                "the lab task and you get back its mean dev-split PGR (null when undefined). Each "
                f"method costs one dev-scoring call from your budget; at most "
                f"{MAX_METHODS_PER_CALL} methods per call. Omitted fields take their defaults; "
                "training settings left null follow the task's recipe. knn_k is 0 (off) or 5-50."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "methods": {
                        "type": "array",
                        "items": method,
                        "minItems": 1,
                        "maxItems": MAX_METHODS_PER_CALL,
                    },
                    "n_seeds": {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
                },
                "required": ["methods", "n_seeds"],
                "additionalProperties": False,
            },
        },
        {
            "name": "read_forum",
            "description": "Every finding posted by any agent so far, best dev PGR first.",
            "input_schema": no_input,
        },
        {
            "name": "post_finding",
            "description": (
                "Share a finding with the other agents: a method the pipeline has already scored "
                "for you, and what you learned. Its dev PGR is the pipeline's. One post per "
                "round; posting again replaces this round's post."
            ),
            "input_schema": choice,
        },
        {
            "name": "submit_method",
            "description": (
                "Submit your final method for this round, with your rationale. This ends your "
                "round."
            ),
            "input_schema": choice,
        },
    ]


TOOLS = tool_definitions()
TOOL_NAMES = [tool["name"] for tool in TOOLS]

SYSTEM_PROMPT = """\
You are agent {agent_id}, one of several automated alignment researchers working in parallel on \
weak-to-strong supervision.

The setting: a weak model (small, trained on ground truth) labels data, and a strong model is \
trained on those weak labels: the weak-to-strong student. The ceiling is the strong model trained \
on ground truth. You design how the student learns from the weak labels so that it recovers as \
much of the ceiling as possible.
The task: {task_description}

The metric is the performance gap recovered, PGR = (acc_w2s - acc_weak) / (acc_ceiling - acc_weak):
0 means the student is no better than its weak teacher, 1 means it is as good as training on \
ground truth. Higher is better. PGR varies from seed to seed (a standard deviation around 0.1 is \
common): do not trust small differences measured on few seeds.

Your research direction: {title}. {description}
Its region of the method space: {space_summary}. Start there; step outside it when the evidence, \
yours or the forum's, says so.

Rules:
- You never see labels, data or code, and you never run code. You choose methods; the pipeline \
trains and scores them and returns each method's mean PGR on a dev split. Nothing else is returned.
- Every method you run costs one dev-scoring call. Scoring calls, tool calls, tokens and dollars \
are limited: spend them on informative experiments.
- Post your best finding with post_finding so the other agents can build on it. Only methods the \
pipeline scored for you can be posted, and they are posted with the pipeline's score.
- Before your round ends, call submit_method with your final method and rationale; it ends the round.
- Only the pipeline's numbers count: the leaderboard and the winner come from its own trials, and \
the winner is re-run on fresh seeds and a held-out test split that no agent ever sees.
"""

ROUND_PROMPT = """\
Round {round} begins. The forum holds {n_posts} post(s) (read_forum shows them). Used so far: \
{tokens:,} of {max_tokens:,} tokens, ${usd:.2f} of ${max_usd:.2f}, {tool_calls} of {max_tool_calls} \
tool calls; up to {max_calls} API calls this round. Run experiments, post your best finding, then \
submit your method."""


class ClaudeAgent:
    """One research agent as a Claude conversation with tools (see the module docstring)."""

    def __init__(
        self,
        agent_id: int,
        direction: ResearchDirection,
        settings: ClaudeSettings,
        log: ConversationLog,
        *,
        task_description: str,
        study_budget: StudyBudgetTracker,
        budget: AgentBudget | None = None,
        client: anthropic.Anthropic | None = None,
        slot: Callable[[], AbstractContextManager] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.agent_id = agent_id
        self.direction = direction
        self.settings = settings
        self.budget = budget or settings.agent_budget
        self.study_budget = study_budget
        self._log = log
        self._client = client or make_client(settings)
        self._slot = slot
        self._sleep = sleep
        self._system = SYSTEM_PROMPT.format(
            agent_id=agent_id,
            task_description=task_description,
            title=direction.title,
            description=direction.description,
            space_summary=direction.space_summary,
        )
        self._load()

    def run_round(self, round: int, gateway: ExperimentGateway) -> RoundOutcome:
        """Converse until the agent submits, ends its turn, hits the round's call cap or a budget.
        API errors that retries cannot heal propagate; the next call resumes from the log."""
        self._load()
        unanswered = self._unanswered()
        if unanswered is not None:
            logger.info(f"agent {self.agent_id}: resuming, answering stored tool calls")
            self._answer_tool_calls(unanswered, gateway)
        if not any(message.round >= round for message in self._messages):
            self._append(round, "user", "prompt", [_text(self._round_prompt(round, gateway))])
        while True:
            over, reason = self._round_end(round)
            if over:
                return self._outcome(round, reason, out_of_budget=False)
            request = self._request()
            estimate = estimate_spend(request, self.settings) + Spend(tool_calls=1)
            exhausted = self._context_full() or self.budget.exceeded_by(self._spent() + estimate)
            exhausted = exhausted or self.study_budget.reserve(estimate)
            if exhausted is not None:
                logger.info(f"agent {self.agent_id} stops: {exhausted}")
                return self._outcome(round, exhausted, out_of_budget=True)
            try:
                result = call_with_retries(
                    self._client, request, self.settings, sleep=self._sleep, slot=self._slot
                )
            except BaseException:
                self.study_budget.settle(estimate, Spend())
                raise
            response = result.response
            call = LLMCall(
                agent_id=self.agent_id,
                round=round,
                turn=len(self._calls),
                model=self.settings.model,
                input_tokens=response.usage.input_tokens,
                output_tokens=response.usage.output_tokens,
                cache_creation_input_tokens=response.usage.cache_creation_input_tokens,
                cache_read_input_tokens=response.usage.cache_read_input_tokens,
                latency_seconds=result.latency_seconds,
                stop_reason=response.stop_reason,
                usd=cost_usd(response.usage, self.settings.price),
                attempts=result.attempts,
                request_id=response.request_id,
            )
            self.study_budget.settle(estimate, call.spend)
            # The cost row first: a crash before the response is stored re-sends the request,
            # which costs money but is recorded; the reverse order would lose a paid call.
            self._log.record_call(call)
            self._calls.append(call)
            message = self._append(round, "assistant", "model", response.content)
            logger.info(
                f"agent {self.agent_id} round {round} turn {call.turn}: "
                f"{response.usage.total_tokens:,} tokens, ${call.usd:.4f}, "
                f"tools {[block['name'] for block in response.tool_uses]}"
            )
            if response.tool_uses:
                self._answer_tool_calls(message, gateway)

    def finding(self, round: int) -> ForumPost | None:
        """The best method the pipeline scored for this agent so far, with its dev PGR."""
        latest = _latest_scores(self._transcript.scored)
        best = max(
            (scored for scored in latest if scored.dev_pgr is not None),
            key=lambda scored: scored.dev_pgr,
            default=None,
        )
        if best is None:
            return None
        n_scored = sum(scored.dev_pgr is not None for scored in latest)
        return ForumPost(
            round=round,
            agent_id=self.agent_id,
            method=best.method,
            dev_pgr=best.dev_pgr,
            n_seeds=best.n_seeds,
            rationale=(
                f"{describe_method(best.method)}: best of {n_scored} scored in "
                f"'{self.direction.title}'"
            ),
        )

    # --- conversation state, always rebuilt from the log ---

    def _load(self) -> None:
        self._messages = self._log.messages(self.agent_id)
        self._calls = self._log.calls(self.agent_id)
        self._transcript = Transcript(self._messages)

    def _context_full(self) -> str | None:
        """The conversation only grows: once the last call's tokens pass the cap, it stops."""
        limit = self.settings.max_context_tokens
        if self._calls and self._calls[-1].usage.total_tokens > limit:
            return f"conversation reached max_context_tokens ({limit:,})"
        return None

    def _spent(self) -> Spend:
        calls = sum((call.spend for call in self._calls), Spend())
        return calls + Spend(tool_calls=self._transcript.tool_calls)

    def _append(
        self, round: int, role: str, kind: str, content: list[dict[str, Any]]
    ) -> StoredMessage:
        message = StoredMessage(
            agent_id=self.agent_id,
            round=round,
            seq=len(self._messages),
            role=role,
            content_json=json.dumps(content),
            kind=kind,
        )
        self._log.append(message)
        self._messages.append(message)
        return message

    def _unanswered(self) -> StoredMessage | None:
        """The last stored message, if it is a model response whose tool calls await results."""
        last = self._messages[-1] if self._messages else None
        return last if last is not None and last.kind == "model" and last.tool_uses else None

    def _round_end(self, round: int) -> tuple[bool, str | None]:
        """Whether the round is over, and why (None: the agent submitted a method)."""
        if round in self._transcript.submissions:
            return True, None
        this_round = [message for message in self._messages if message.round == round]
        if this_round and this_round[-1].kind == "model" and not this_round[-1].tool_uses:
            return True, "ended its turn without submitting a method"
        if self._calls_in(round) >= self.settings.max_api_calls_per_round:
            return (
                True,
                f"reached max_api_calls_per_round ({self.settings.max_api_calls_per_round})",
            )
        if self._messages[-1].round > round:
            return True, "the conversation has moved on to a later round"
        return False, None

    def _outcome(self, round: int, stop_reason: str | None, out_of_budget: bool) -> RoundOutcome:
        submitted, rationale = self._transcript.submissions.get(round, (None, None))
        post = self._transcript.posts.get(round)
        return RoundOutcome(
            agent_id=self.agent_id,
            round=round,
            submitted=submitted,
            rationale=rationale,
            scored=[scored for scored in self._transcript.scored if scored.round == round],
            posts=[] if post is None else [post],
            stop_reason=stop_reason,
            out_of_budget=out_of_budget,
            api_calls=self._calls_in(round),
        )

    def _calls_in(self, round: int) -> int:
        return sum(call.round == round for call in self._calls)

    def _round_prompt(self, round: int, gateway: ExperimentGateway) -> str:
        spent = self._spent()
        return ROUND_PROMPT.format(
            round=round,
            n_posts=len(gateway.read_forum()),
            tokens=spent.tokens,
            max_tokens=self.budget.max_tokens_per_agent,
            usd=spent.usd,
            max_usd=self.budget.max_usd_per_agent,
            tool_calls=spent.tool_calls,
            max_tool_calls=self.budget.max_tool_calls_per_agent,
            max_calls=self.settings.max_api_calls_per_round,
        )

    def _request(self) -> dict[str, Any]:
        """The next request. Top-level `cache_control` puts the prompt-cache breakpoint on the
        last block, so each turn reads the conversation so far from the cache."""
        return {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "system": self._system,
            "tools": TOOLS,
            "cache_control": {"type": "ephemeral"},
            "messages": wire_messages(self._messages),
        }

    # --- tools: pipeline-side, deterministic, free ---

    def _answer_tool_calls(self, message: StoredMessage, gateway: ExperimentGateway) -> None:
        """Run every tool call of a model response, in order and each seeing the effects of the
        ones before, and store the results as one message. Once a tool-call budget is reached the
        remaining calls are answered as not run."""
        results = []
        refusal = None
        for block in message.tool_uses:
            refusal = refusal or self.budget.exceeded_by(self._spent() + Spend(tool_calls=1))
            refusal = refusal or self.study_budget.reserve(Spend(tool_calls=1))
            if refusal is not None:
                result = _tool_result(
                    block["id"], {"error": f"not run: {refusal}", "not_run": True}
                )
            else:
                try:
                    result = self._run_tool(message.round, block, gateway)
                except BaseException:
                    self.study_budget.settle(Spend(tool_calls=1), Spend())
                    raise
                self.study_budget.settle(Spend(tool_calls=1), Spend(tool_calls=1))
            self._transcript.record(message.round, block, result)
            results.append(result)
        self._append(message.round, "user", "tool_results", results)

    def _run_tool(
        self, round: int, block: dict[str, Any], gateway: ExperimentGateway
    ) -> dict[str, Any]:
        name, tool_input = block["name"], block["input"]
        try:
            if name == "describe_method_space":
                payload = _method_space()
            elif name == "read_forum":
                payload = {"posts": [_post_payload(post) for post in _best_first(gateway)]}
            elif name == "run_experiments":
                payload = self._run_experiments(
                    round, RunExperimentsInput.model_validate(tool_input), gateway
                )
            elif name == "post_finding":
                payload = self._post_finding(round, MethodChoiceInput.model_validate(tool_input))
            elif name == "submit_method":
                payload = _submission(
                    MethodChoiceInput.model_validate(tool_input), self._transcript.scored
                )
            else:
                return _tool_result(
                    block["id"], {"error": f"unknown tool {name!r}; the tools are {TOOL_NAMES}"}
                )
        except ValidationError as error:
            return _tool_result(
                block["id"], {"error": f"invalid input for {name}: {_brief(error)}"}
            )
        except ToolRefused as refused:
            return _tool_result(block["id"], {"error": str(refused)})
        return _tool_result(block["id"], payload, is_error=False)

    def _run_experiments(
        self, round: int, request: RunExperimentsInput, gateway: ExperimentGateway
    ) -> dict[str, Any]:
        try:
            scores = gateway.run_experiments(self.agent_id, round, request.methods, request.n_seeds)
        except BudgetExhausted as exhausted:
            raise ToolRefused(f"dev-scoring budget: {exhausted}; nothing was scored") from None
        if len(scores) != len(request.methods):
            raise RuntimeError(
                f"the gateway returned {len(scores)} scores for {len(request.methods)} methods"
            )
        return {
            "results": [
                {
                    "method": _method_json(method),
                    "summary": describe_method(method),
                    "dev_pgr": score if score is not None and math.isfinite(score) else None,
                    "n_seeds": request.n_seeds,
                }
                for method, score in zip(request.methods, scores, strict=True)
            ]
        }

    def _post_finding(self, round: int, choice: MethodChoiceInput) -> dict[str, Any]:
        latest = {item.method.method_hash: item for item in _latest_scores(self._transcript.scored)}
        scored = latest.get(choice.method.method_hash)
        if scored is None or scored.dev_pgr is None:
            raise ToolRefused(
                "only a method the pipeline has scored for you (with a defined dev PGR) can be "
                "posted: run it with run_experiments first"
            )
        post = ForumPost(
            round=round,
            agent_id=self.agent_id,
            method=choice.method,
            dev_pgr=scored.dev_pgr,
            n_seeds=scored.n_seeds,
            rationale=choice.rationale,
        )
        return {"posted": _post_payload(post)}


class ToolRefused(Exception):
    """A well-formed tool call the pipeline will not carry out; the model is told why."""


class Transcript:
    """An agent's state, replayed from its stored conversation: what the pipeline scored for it,
    its posts and submissions per round, and the tool calls it used."""

    def __init__(self, messages: list[StoredMessage]):
        self.scored: list[ScoredMethod] = []
        self.posts: dict[int, ForumPost] = {}
        self.submissions: dict[int, tuple[MethodSpec, str]] = {}
        self.tool_calls = 0
        tool_uses: dict[str, dict[str, Any]] = {}
        for message in messages:
            if message.kind == "model":
                tool_uses = {block["id"]: block for block in message.tool_uses}
            elif message.kind == "tool_results":
                for result in message.content:
                    self.record(message.round, tool_uses[result["tool_use_id"]], result)

    def record(self, round: int, tool_use: dict[str, Any], result: dict[str, Any]) -> None:
        """Apply one tool call's stored result."""
        payload = json.loads(result["content"])
        if payload.get("not_run"):
            return
        self.tool_calls += 1
        if result.get("is_error"):
            return
        if tool_use["name"] == "run_experiments":
            self.scored.extend(
                ScoredMethod(
                    round=round,
                    method=MethodSpec.model_validate(item["method"]),
                    dev_pgr=item["dev_pgr"],
                    n_seeds=item["n_seeds"],
                )
                for item in payload["results"]
            )
        elif tool_use["name"] == "post_finding":
            posted = {key: payload["posted"][key] for key in ForumPost.model_fields}
            self.posts[round] = ForumPost.model_validate(posted)
        elif tool_use["name"] == "submit_method":
            method = MethodSpec.model_validate(payload["submitted"])
            self.submissions[round] = (method, payload["rationale"])


def recorded_spend(log: ConversationLog, agent_ids: list[int]) -> Spend:
    """What the agents' stored calls and tool calls already spent: seeds a resumed study's
    `StudyBudgetTracker`."""
    total = Spend()
    for agent_id in agent_ids:
        calls = sum((call.spend for call in log.calls(agent_id)), Spend())
        tool_calls = Transcript(log.messages(agent_id)).tool_calls
        total = total + calls + Spend(tool_calls=tool_calls)
    return total


def wire_messages(messages: list[StoredMessage]) -> list[dict[str, Any]]:
    """The stored conversation as the Messages API wants it: consecutive same-role messages
    merged (a round prompt may follow tool results) and empty text blocks dropped."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        blocks = [_wire_block(block) for block in message.content]
        blocks = [block for block in blocks if block is not None]
        if not blocks:
            continue
        if wire and wire[-1]["role"] == message.role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": message.role, "content": blocks})
    return wire


def _wire_block(block: dict[str, Any]) -> dict[str, Any] | None:
    """Only the fields the API accepts back; the stored block keeps everything it returned."""
    if block["type"] == "text":
        return {"type": "text", "text": block["text"]} if block["text"] else None
    if block["type"] == "tool_use":
        return {key: block[key] for key in ("type", "id", "name", "input")}
    return block


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _tool_result(tool_use_id: str, payload: dict[str, Any], is_error: bool = True):
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": json.dumps(payload),
        "is_error": is_error,
    }


def _brief(error: ValidationError) -> str:
    """Pydantic's errors, one line each, without its documentation links."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'input'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )


def _method_space() -> dict[str, Any]:
    return {
        "method_schema": MethodSpec.model_json_schema(),
        "presets": {
            name: preset.model_dump(mode="json", exclude_defaults=True)
            for name, preset in PRESETS.items()
        },
        "notes": "knn_k is 0 (off) or 5-50; null training settings follow the task's recipe",
    }


def _best_first(gateway: ExperimentGateway) -> list[ForumPost]:
    return sorted(
        gateway.read_forum(),
        key=lambda post: (post.dev_pgr is None, -(post.dev_pgr or 0.0), post.round),
    )


def _post_payload(post: ForumPost) -> dict[str, Any]:
    return {
        **post.model_dump(mode="json"),
        "method": _method_json(post.method),
        "summary": describe_method(post.method),
    }


def _method_json(method: MethodSpec) -> dict[str, Any]:
    """A method as the model reads it: only the fields not at their defaults."""
    return method.model_dump(mode="json", exclude_defaults=True)


def _submission(choice: MethodChoiceInput, scored: list[ScoredMethod]) -> dict[str, Any]:
    was_scored = any(item.method == choice.method for item in scored)
    return {
        "submitted": _method_json(choice.method),
        "summary": describe_method(choice.method),
        "rationale": choice.rationale,
        "scored_before": was_scored,
        "message": "Submission recorded. Your round is over.",
    }


def _latest_scores(scored: list[ScoredMethod]) -> list[ScoredMethod]:
    """One entry per method: its latest score (a re-run on more seeds supersedes an earlier one)."""
    return list({item.method.method_hash: item for item in scored}.values())
