"""Method programs in a Claude agent's tools: which programs an agent may use, writing and reading
them, and what `describe_method_space` says about them.

An agent may use the programs it wrote, those it used before, those posted in the forum it was
given this round and the library's; a program reference ({"program_id", "params"}) resolves to a
`ProgramMethod` among those only. The host never runs a program here: `make_program` checks its
syntax and interface, and only the lab's sandbox runs it.

A stored conversation must replay to the same programs without the forums of past rounds, so a
tool result that first uses a program the agent did not write keeps that program's name and
source on its stored block, under `PROGRAM_SOURCES` (never sent back to the API: see
`transcript.wire_messages`). A program the agent wrote is replayed from its write_program call.
"""

import ast
import json
from functools import cache
from typing import Any

from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.programs.catalog import library_names, library_program
from labgap.programs.isolation import detect_isolation
from labgap.programs.method import (
    ParamRange,
    ProgramError,
    ProgramMethod,
    make_program,
    parse_source,
)
from labgap.search.agent import ForumPost
from labgap.search.claude.inputs import ProgramRef, WriteProgramInput
from labgap.search.claude.tools import ToolRefused

PROGRAM_SOURCES = "program_sources"
"""The key, on a stored tool_result block, of the programs its tool first used: {program_id:
{"name", "source"}}."""


@cache
def library_by_id() -> dict[str, ProgramMethod]:
    """The library's programs at their defaults, by program id."""
    return {program.program_id: program for program in map(library_program, library_names())}


class ProgramShelf:
    """The programs an agent may use in one tool call: `known` (those it wrote or used before, by
    id, as its transcript replays them), then the forum's, then the library's. `introduced`
    collects the programs the call used that `known` lacked."""

    def __init__(self, known: dict[str, ProgramMethod], forum: list[ForumPost]):
        self._known = known
        self._forum = {
            post.method.program_id: post.method
            for post in forum
            if isinstance(post.method, ProgramMethod)
        }
        self.introduced: dict[str, ProgramMethod] = {}

    def find(self, program_id: str) -> ProgramMethod:
        for programs in (self._known, self._forum, library_by_id()):
            if program_id in programs:
                return programs[program_id]
        raise ToolRefused(
            f"no program {program_id} is available to you: use the program_id that write_program "
            "returned, one from a forum post (read_forum) or a library program "
            "(describe_method_space)"
        )

    def resolve(self, choice: MethodSpec | ProgramRef) -> Method:
        """The method a tool's input names: a MethodSpec as it is, a program with its parameter
        values (defaults for those left out)."""
        if isinstance(choice, MethodSpec):
            return choice
        program = self.find(choice.program_id)
        try:
            method = program.with_params(choice.params)
        except ProgramError as error:
            raise ToolRefused(f"program {program.program_id} ({program.name}): {error}") from None
        if program.program_id not in self._known:
            self.introduced[program.program_id] = program
        return method

    def sources(self) -> dict[str, dict[str, str]]:
        """What a stored tool result keeps of the programs it introduced (see the module doc)."""
        return {
            program_id: {"name": program.name, "source": program.source}
            for program_id, program in self.introduced.items()
        }


def learned_programs(result: dict[str, Any]) -> list[ProgramMethod]:
    """The programs a stored tool result introduced, at their defaults."""
    stored = result.get(PROGRAM_SOURCES, {})
    return [make_program(item["source"], item["name"]) for item in stored.values()]


def unsandboxed_refusal(allowed: bool) -> str | None:
    """Why write_program is refused on this machine, or None: agent-written code runs only in the
    full sandbox unless the study allows unsandboxed programs."""
    if allowed:
        return None
    isolation = detect_isolation()
    if isolation.level == "full":
        return None
    return (
        f"write_program is disabled: this machine cannot fully isolate programs (sandbox level "
        f"{isolation.level!r}: {isolation.detail}) and the study does not allow unsandboxed "
        "programs (allow_unsandboxed_programs). Describe your methods as MethodSpecs instead."
    )


def write_program(request: WriteProgramInput, allow_unsandboxed: bool) -> dict[str, Any]:
    """The write_program payload: the checked program's id and parameters. A program that is not
    a valid method (syntax, interface, PARAMS) is refused with the one-line reason."""
    refusal = unsandboxed_refusal(allow_unsandboxed)
    if refusal is not None:
        raise ToolRefused(refusal)
    try:
        program = make_program(request.source, request.name)
    except ProgramError as error:
        raise ToolRefused(
            f"the program was not accepted: {error}. Fix it and write it again."
        ) from None
    example = {"program_id": program.program_id, "params": program.params}
    return {
        "program_id": program.program_id,
        "params": param_ranges(program.param_space),
        "message": (
            f"Program {program.name} written. It was checked without running it; errors while "
            "it runs come back in run_experiments' results. Run it with run_experiments, e.g. "
            f'{{"methods": [{json.dumps(example)}]}} (parameters left out take their defaults).'
        ),
    }


def read_program(program: ProgramMethod) -> dict[str, Any]:
    """The read_program payload."""
    return {
        "program_id": program.program_id,
        "name": program.name,
        "source": program.source,
        "params": param_ranges(program.param_space),
    }


def param_ranges(space: dict[str, ParamRange]) -> dict[str, dict[str, Any]]:
    """A program's declared parameters as the model reads them: type, range and default."""
    ranges = {}
    for name, spec in space.items():
        shown = spec.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        shown = {"type": spec.type, **shown, "default": spec.default}
        if spec.type == "int":
            shown.update(low=int(spec.low), high=int(spec.high))
        ranges[name] = shown
    return ranges


def programs_overview() -> dict[str, Any]:
    """What describe_method_space says about programs: how to name one, and the library."""
    return {
        "how_to_use": (
            "A method can also be a program: write one with write_program (its description "
            "gives the interface: fit_predict(data) returning class probabilities from the "
            "teacher's probabilities and unlabeled features), read one with read_program, and "
            'name one in run_experiments, post_finding and submit_method as {"program_id": '
            '"<16 hex>", "params": {...}} (parameters left out take their defaults).'
        ),
        "library": [
            {
                "name": program.name,
                "program_id": program.program_id,
                "idea": _first_line(program.source),
                "params": param_ranges(program.param_space),
            }
            for program in library_by_id().values()
        ],
    }


def _first_line(source: str) -> str:
    docstring = ast.get_docstring(parse_source(source)) or ""
    return docstring.strip().split("\n")[0]
