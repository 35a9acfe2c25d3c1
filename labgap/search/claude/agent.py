"""The `claude` agent backend: each agent is one Claude conversation with tools, across rounds.

Claude wants experiment results inside its conversation, so instead of the embedded agents'
propose/observe batches it reaches the `Lab` through tools during its round. The guarantees are
the embedded agents': the agent never sees labels or runs code, it only chooses validated
`MethodSpec`s, and every number it sees or posts is the pipeline's.

Every message (round prompt, model response, tool results) is appended to a `ConversationLog` as
it happens and every API call is recorded, so a crashed round resumes from the log: the
conversation is rebuilt, a stored response whose tools were not answered yet gets its tools run
again (pipeline-side and free) and no request whose response is stored is ever sent again. The
agent's own state (scored methods, posts, submissions, tool calls) is always replayed from the
JSON tool results it stored (see transcript.py), so live runs and resumed runs share one code path.
"""

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anthropic
from pydantic import ValidationError

from labgap.llm.budgets import Spend, StudyBudgetTracker, cost_usd, estimate_spend
from labgap.llm.client import LLMCall, call_with_retries, make_client
from labgap.llm.settings import AgentBudget, ClaudeSettings
from labgap.search.agent import ForumPost, Lab, RoundOutcome, describe_method
from labgap.search.claude.prompts import round_prompt, system_prompt
from labgap.search.claude.tools import (
    TOOL_NAMES,
    TOOLS,
    MethodChoiceInput,
    RunExperimentsInput,
    ToolRefused,
    describe_validation_error,
    experiments_payload,
    finding_post,
    forum_payload,
    latest_scores,
    method_space,
    post_payload,
    submission_payload,
    tool_result,
)
from labgap.search.claude.transcript import (
    ConversationLog,
    StoredMessage,
    Transcript,
    wire_messages,
)
from labgap.search.directions import ResearchDirection
from labgap.search.scoring import BudgetExhausted

logger = logging.getLogger(__name__)


class ClaudeAgent:
    """One research agent as a Claude conversation with tools (see the module docstring); an
    `Agent` of `labgap.search.agent`."""

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
        self._system = system_prompt(agent_id, direction, task_description)
        self._load()

    def run_round(self, round: int, forum: list[ForumPost], lab: Lab) -> RoundOutcome:
        """Converse until the agent submits, ends its turn, hits the round's call cap or a budget.
        `forum` is the forum as the round began: `read_forum` shows it. `lab` scores the methods
        `run_experiments` asks for. The outcome posts this round's `post_finding`, else the
        agent's `finding`. API errors that retries cannot heal propagate; the next call resumes
        from the log."""
        self._load()
        unanswered = self._unanswered()
        if unanswered is not None:
            logger.info(f"agent {self.agent_id}: resuming, answering stored tool calls")
            self._answer_tool_calls(unanswered, forum, lab)
        if not any(message.round >= round for message in self._messages):
            prompt = round_prompt(
                round, len(forum), self._spent(), self.budget, self.settings.max_api_calls_per_round
            )
            self._append(round, "user", "prompt", [{"type": "text", "text": prompt}])
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
                self._answer_tool_calls(message, forum, lab)

    def finding(self, round: int) -> ForumPost | None:
        """The best method the pipeline scored for this agent so far, with its dev PGR."""
        latest = latest_scores(self._transcript.scored)
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
        """The round as replayed from the log. Its post is the one made with `post_finding` this
        round or, when there is none, the agent's `finding` (if it has one)."""
        submitted, rationale = self._transcript.submissions.get(round, (None, None))
        post = self._transcript.posts.get(round)
        if post is None:
            post = self.finding(round)
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

    def _answer_tool_calls(self, message: StoredMessage, forum: list[ForumPost], lab: Lab) -> None:
        """Run every tool call of a model response, in order and each seeing the effects of the
        ones before, and store the results as one message. Once a tool-call budget is reached the
        remaining calls are answered as not run."""
        results = []
        refusal = None
        for block in message.tool_uses:
            refusal = refusal or self.budget.exceeded_by(self._spent() + Spend(tool_calls=1))
            refusal = refusal or self.study_budget.reserve(Spend(tool_calls=1))
            if refusal is not None:
                result = tool_result(block["id"], {"error": f"not run: {refusal}", "not_run": True})
            else:
                try:
                    result = self._run_tool(message.round, block, forum, lab)
                except BaseException:
                    self.study_budget.settle(Spend(tool_calls=1), Spend())
                    raise
                self.study_budget.settle(Spend(tool_calls=1), Spend(tool_calls=1))
            self._transcript.record(message.round, block, result)
            results.append(result)
        self._append(message.round, "user", "tool_results", results)

    def _run_tool(
        self, round: int, block: dict[str, Any], forum: list[ForumPost], lab: Lab
    ) -> dict[str, Any]:
        name, tool_input = block["name"], block["input"]
        scored = self._transcript.scored
        try:
            if name == "describe_method_space":
                payload = method_space()
            elif name == "read_forum":
                payload = forum_payload(forum)
            elif name == "run_experiments":
                request = RunExperimentsInput.model_validate(tool_input)
                payload = self._run_experiments(round, request, lab)
            elif name == "post_finding":
                choice = MethodChoiceInput.model_validate(tool_input)
                payload = {
                    "posted": post_payload(finding_post(self.agent_id, round, choice, scored))
                }
            elif name == "submit_method":
                payload = submission_payload(MethodChoiceInput.model_validate(tool_input), scored)
            else:
                return tool_result(
                    block["id"], {"error": f"unknown tool {name!r}; the tools are {TOOL_NAMES}"}
                )
        except ValidationError as error:
            return tool_result(
                block["id"],
                {"error": f"invalid input for {name}: {describe_validation_error(error)}"},
            )
        except ToolRefused as refused:
            return tool_result(block["id"], {"error": str(refused)})
        return tool_result(block["id"], payload, is_error=False)

    def _run_experiments(
        self, round: int, request: RunExperimentsInput, lab: Lab
    ) -> dict[str, Any]:
        """Score the methods with the lab, one scoring call per method, in order."""
        try:
            calls = lab.score(self.agent_id, round, request.methods, request.n_seeds)
        except BudgetExhausted as exhausted:
            raise ToolRefused(f"dev-scoring budget: {exhausted}; nothing was scored") from None
        if [call.method_hash for call in calls] != [m.method_hash for m in request.methods]:
            raise RuntimeError(
                f"the lab returned {len(calls)} scoring call(s) that do not match, in order, the "
                f"{len(request.methods)} method(s) asked"
            )
        scores = [call.dev_pgr for call in calls]
        return experiments_payload(request.methods, scores, request.n_seeds)
