"""What a Claude agent's tools do: one tool call's input parsed, the tool run, its result block.

The agent (agent.py) owns the conversation, its API calls and budgets, and records each result in
its `Transcript`; this module only dispatches a call by tool name. Every tool is pipeline-side,
deterministic and free, except `run_experiments`, which asks the lab to score methods.
"""

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from labgap.methods.kinds import Method
from labgap.search.agent import ForumPost, Lab
from labgap.search.claude.inputs import (
    MethodChoiceInput,
    NoInput,
    ReadProgramInput,
    RunExperimentsInput,
    WriteProgramInput,
    describe_validation_error,
    parse_input,
)
from labgap.search.claude.programs import (
    PROGRAM_SOURCES,
    ProgramShelf,
    programs_overview,
    read_program,
    write_program,
)
from labgap.search.claude.tools import (
    TOOL_NAMES,
    ToolRefused,
    experiments_payload,
    finding_post,
    forum_payload,
    free_answers,
    method_space,
    post_payload,
    submission_payload,
    tool_result,
)
from labgap.search.claude.transcript import Transcript
from labgap.search.scoring import BudgetExhausted


@dataclass(frozen=True)
class ToolContext:
    """What the tool calls of one model response act on: the agent's round, its transcript so far
    (read, never changed here), the forum as the round began and the lab that scores methods."""

    agent_id: int
    round: int
    transcript: Transcript
    forum: list[ForumPost]
    lab: Lab
    forum_posts_shown: int
    allow_unsandboxed_programs: bool


def run_tool(block: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """One tool call's result block. It keeps the programs the call first used (see
    programs.py) so the transcript replays them without this round's forum."""
    name = block["name"]
    shelf = ProgramShelf(context.transcript.programs, context.forum)
    try:
        payload = _tool_payload(name, block["input"], shelf, context)
    except ValidationError as error:
        message = f"invalid input for {name}: {describe_validation_error(error)}"
        return tool_result(block["id"], {"error": message})
    except ToolRefused as refused:
        return tool_result(block["id"], {"error": str(refused)})
    result = tool_result(block["id"], payload, is_error=False)
    if shelf.introduced:
        result[PROGRAM_SOURCES] = shelf.sources()
    return result


def _tool_payload(
    name: str, tool_input: dict[str, Any], shelf: ProgramShelf, context: ToolContext
) -> dict[str, Any]:
    round, scored = context.round, context.transcript.scored
    if name == "describe_method_space":
        parse_input(NoInput, tool_input)
        return {**method_space(), "programs": programs_overview()}
    if name == "read_forum":  # the forum changes between rounds only: read it once a round
        parse_input(NoInput, tool_input)
        if round in context.transcript.forum_read:
            return {"unchanged": True, "message": "As you read it earlier this round."}
        return forum_payload(context.forum, context.agent_id, context.forum_posts_shown)
    if name == "write_program":
        request = parse_input(WriteProgramInput, tool_input)
        return write_program(request, context.allow_unsandboxed_programs)
    if name == "read_program":
        return read_program(shelf.find(parse_input(ReadProgramInput, tool_input).program_id))
    if name == "run_experiments":
        request = parse_input(RunExperimentsInput, tool_input)
        methods = [shelf.resolve(choice) for choice in request.methods]
        return _run_experiments(methods, request.n_seeds, context)
    if name in ("post_finding", "submit_method"):
        choice = parse_input(MethodChoiceInput, tool_input)
        method = shelf.resolve(choice.method)
        if name == "submit_method":
            return submission_payload(choice, scored, method)
        return {
            "posted": post_payload(finding_post(context.agent_id, round, choice, scored, method))
        }
    raise ToolRefused(f"unknown tool {name!r}; the tools are {TOOL_NAMES}")


def _run_experiments(
    methods: list[Method], n_seeds: int | None, context: ToolContext
) -> dict[str, Any]:
    """Score the methods with the lab, one scoring call per method, in order. An answer is
    free when the lab returns a call of an earlier round, or of a method already charged this
    round (or earlier in this request): the lab holds one call per agent, round and method."""
    round = context.round
    try:
        calls = context.lab.score(context.agent_id, round, methods, n_seeds)
    except BudgetExhausted as exhausted:
        raise ToolRefused(f"dev-scoring budget: {exhausted}; nothing was scored") from None
    if [call.method_hash for call in calls] != [m.method_hash for m in methods]:
        raise RuntimeError(
            f"the lab returned {len(calls)} scoring call(s) that do not match, in order, the "
            f"{len(methods)} method(s) asked"
        )
    charged = {method for when, method in context.transcript.charged if when == round}
    return experiments_payload(methods, calls, free_answers(calls, round, charged), n_seeds)
