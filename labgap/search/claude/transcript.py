"""A Claude agent's stored conversation: its messages, where they are kept, what they replay to,
and how they go back over the wire.

Every message (round prompt, model response, tool results) is stored as it happens, and the
agent's state (programs, scored methods, posts, submissions, tool calls) is always replayed from
the JSON tool results it stored, so live runs and resumed runs share one code path.
"""

import json
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from labgap.llm.budgets import Spend
from labgap.llm.client import LLMCall
from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.programs.method import ProgramMethod, make_program
from labgap.search.agent import ForumPost, ScoredMethod
from labgap.search.claude.programs import PROGRAM_SOURCES, learned_programs
from labgap.search.claude.tools import CHARGED


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


class Transcript:
    """An agent's state, replayed from its stored conversation: the programs it wrote (`written`,
    by id) or used (`programs`: both, at their defaults, by id), what the pipeline scored for it
    (and which of those scorings were charged, by round and method hash), its posts and
    submissions per round, the rounds in which it read the forum, and the tool calls it used."""

    def __init__(self, messages: list[StoredMessage]):
        self.programs: dict[str, ProgramMethod] = {}
        self.written: set[str] = set()
        self.scored: list[ScoredMethod] = []
        self.charged: set[tuple[int, str]] = set()
        self.posts: dict[int, ForumPost] = {}
        self.submissions: dict[int, tuple[Method, str]] = {}
        self.forum_read: set[int] = set()
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
        for program in learned_programs(result):
            self.programs.setdefault(program.program_id, program)
        rationale = tool_use["input"].get("rationale")
        if tool_use["name"] == "write_program":
            program = make_program(tool_use["input"]["source"], tool_use["input"]["name"])
            if program.program_id != payload["program_id"]:
                raise ValueError(
                    f"write_program answered {payload['program_id']}, not {program.program_id}"
                )
            self.programs[program.program_id] = program
            self.written.add(program.program_id)
        elif tool_use["name"] == "run_experiments":
            for item in payload["results"]:
                method = self._method(item["method"])
                scored = ScoredMethod(
                    round=round, method=method, dev_pgr=item["dev_pgr"], n_seeds=item["n_seeds"]
                )
                self.scored.append(scored)
                if not item.get("cost", CHARGED).startswith("free"):
                    self.charged.add((round, method.method_hash))
        elif tool_use["name"] == "post_finding":
            posted = {**payload["posted"], "rationale": rationale}
            posted["method"] = self._method(posted["method"])
            self.posts[round] = ForumPost(**{key: posted[key] for key in ForumPost.model_fields})
        elif tool_use["name"] == "submit_method":
            self.submissions[round] = (self._method(payload["submitted"]), rationale)
        elif tool_use["name"] == "read_forum":
            self.forum_read.add(round)

    def _method(self, shown: dict[str, Any]) -> Method:
        """A method from its stored form (`tools.method_json`): a program's source is the one
        the transcript learned when the agent wrote or first used it."""
        if "program_id" not in shown:
            return MethodSpec.model_validate(shown)
        source = self.programs[shown["program_id"]].source
        return ProgramMethod(
            name=shown["name"],
            program_id=shown["program_id"],
            params=shown["params"],
            source=source,
        )


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
    if block["type"] == "tool_result":
        return {key: value for key, value in block.items() if key != PROGRAM_SOURCES}
    return block
