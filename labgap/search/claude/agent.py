"""The `claude` agent backend: each agent is one Claude conversation with tools, across rounds.

Claude wants experiment results inside its conversation, so instead of the embedded agents'
propose/observe batches it reaches the `Lab` through tools during its round. The guarantees are
the embedded agents': the agent never sees labels, it only chooses validated `MethodSpec`s or
method programs (code it writes, checked here without running it and run only by the lab, in its
sandbox), and every number it sees or posts is the pipeline's.

Every message (round prompt, model response, tool results) is appended to a `ConversationLog` as
it happens and every API call is recorded, so a crashed round resumes from the log: the
conversation is rebuilt, a stored response whose tools were not answered yet gets its tools run
again (pipeline-side and free) and no request whose response is stored is ever sent again. The
agent's own state (programs, scored methods, posts, submissions, tool calls) is always replayed
from the tool calls and JSON results it stored (see transcript.py), so live runs and resumed runs
share one code path. What each tool does is dispatch.py's.
"""

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import anthropic

from labgap.llm.budgets import (
    Spend,
    StudyBudgetTracker,
    Usage,
    context_overflow,
    cost_usd,
    estimate_spend,
)
from labgap.llm.client import CallFailed, LLMCall, call_with_retries, make_client
from labgap.llm.settings import AgentBudget, ClaudeSettings
from labgap.search.agent import ForumPost, Lab, RoundOutcome
from labgap.search.claude.dispatch import ToolContext, run_tool
from labgap.search.claude.prompts import round_prompt, system_prompt
from labgap.search.claude.tools import TOOLS, best_finding, tool_result
from labgap.search.claude.transcript import (
    ConversationLog,
    StoredMessage,
    Transcript,
    wire_messages,
)
from labgap.search.directions import ResearchDirection

logger = logging.getLogger(__name__)


class ClaudeAgent:
    """One research agent as a Claude conversation with tools (see the module docstring); an
    `Agent` of `labgap.search.agent`. `allow_unsandboxed_programs` lets it write programs where
    this machine cannot fully sandbox them (the study config's flag; off: write_program is
    refused there)."""

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
        min_seeds: int | None = None,
        client: anthropic.Anthropic | None = None,
        slot: Callable[[], AbstractContextManager] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        allow_unsandboxed_programs: bool = False,
    ):
        self.agent_id = agent_id
        self.allow_unsandboxed_programs = allow_unsandboxed_programs
        self.direction = direction
        self.settings = settings
        self.budget = budget or settings.agent_budget
        self.study_budget = study_budget
        self._log = log
        self._client = client or make_client(settings)
        self._slot = slot
        self._sleep = sleep
        self._system = system_prompt(agent_id, direction, task_description, min_seeds)
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
            exhausted = self._context_overflow(request)
            exhausted = exhausted or self.budget.exceeded_by(self._spent() + estimate)
            exhausted = exhausted or self.study_budget.reserve(estimate)
            if exhausted is not None:
                logger.info(f"agent {self.agent_id} stops: {exhausted}")
                return self._outcome(round, exhausted, out_of_budget=True)
            try:
                result = call_with_retries(
                    self._client, request, self.settings, sleep=self._sleep, slot=self._slot
                )
            except CallFailed as failed:
                # Malformed responses the API billed are spent even though none was usable.
                spent = Spend()
                if failed.billed.total_tokens:
                    spent = self._record_call(
                        round, failed.billed, 0.0, None, failed.attempts, failed.request_id
                    ).spend
                self.study_budget.settle(estimate, spent)
                raise
            except BaseException:
                self.study_budget.settle(estimate, Spend())
                raise
            response = result.response
            # The cost row first: a crash before the response is stored re-sends the request,
            # which costs money but is recorded; the reverse order would lose a paid call.
            call = self._record_call(
                round,
                response.usage,
                result.latency_seconds,
                response.stop_reason,
                result.attempts,
                response.request_id,
            )
            self.study_budget.settle(estimate, call.spend)
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
        return best_finding(self.agent_id, round, self._transcript.scored, self.direction.title)

    # --- conversation state, always rebuilt from the log ---

    def _load(self) -> None:
        self._messages = self._log.messages(self.agent_id)
        self._calls = self._log.calls(self.agent_id)
        self._transcript = Transcript(self._messages)

    def _context_overflow(self, request: dict[str, Any]) -> str | None:
        """Why `request` may not fit the context (see `context_overflow`). Any earlier answered
        request plus its response is a floor, as the conversation only grows (single-attempt
        calls only: retries add the tokens of discarded responses)."""
        floor = max(
            (c.usage.total_tokens for c in self._calls if c.attempts == 1 and c.stop_reason),
            default=0,
        )
        return context_overflow(request, floor, self.settings)

    def _record_call(
        self,
        round: int,
        usage: Usage,
        latency_seconds: float,
        stop_reason: str | None,
        attempts: int,
        request_id: str | None,
    ) -> LLMCall:
        """Store the cost row of one API call (answered or not) before anything acts on it."""
        call = LLMCall(
            agent_id=self.agent_id,
            round=round,
            turn=len(self._calls),
            model=self.settings.model,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            latency_seconds=latency_seconds,
            stop_reason=stop_reason,
            usd=cost_usd(usage, self.settings.price),
            attempts=attempts,
            request_id=request_id,
        )
        self._log.record_call(call)
        self._calls.append(call)
        return call

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
            reason = "ended its turn without submitting a method"
            answered = [call for call in self._calls if call.stop_reason is not None]
            api_reason = answered[-1].stop_reason if answered else None
            if api_reason not in (None, "end_turn"):
                reason += f" (the API's stop_reason: {api_reason})"
            return True, reason
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
        ones before, and store the results as one message. Once a submission has ended the round
        or a tool-call budget is reached, the remaining calls are answered as not run (free)."""
        context = ToolContext(
            agent_id=self.agent_id,
            round=message.round,
            transcript=self._transcript,
            forum=forum,
            lab=lab,
            forum_posts_shown=self.settings.forum_posts_shown,
            allow_unsandboxed_programs=self.allow_unsandboxed_programs,
        )
        results = []
        refusal = None
        for block in message.tool_uses:
            if message.round in self._transcript.submissions:
                refusal = "submit_method has ended your round"
            refusal = refusal or self.budget.exceeded_by(self._spent() + Spend(tool_calls=1))
            refusal = refusal or self.study_budget.reserve(Spend(tool_calls=1))
            if refusal is not None:
                result = tool_result(block["id"], {"error": f"not run: {refusal}", "not_run": True})
            else:
                try:
                    result = run_tool(block, context)
                except BaseException:
                    self.study_budget.settle(Spend(tool_calls=1), Spend())
                    raise
                self.study_budget.settle(Spend(tool_calls=1), Spend(tool_calls=1))
            self._transcript.record(message.round, block, result)
            results.append(result)
        self._append(message.round, "user", "tool_results", results)
