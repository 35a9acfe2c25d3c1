"""Both kinds of method as one: a `MethodSpec` (knobs, in-process) or a `ProgramMethod` (code,
sandboxed). Leaderboard, winner, confirmation, transfer and report treat them alike."""

import json
from pathlib import Path

from labgap.errors import LabgapInputError
from labgap.methods.spec import MethodSpec, preset_name, resolve_method
from labgap.programs.method import ProgramMethod, describe_program, load_program, source_of

Method = MethodSpec | ProgramMethod


def parse_method(method_json: str) -> Method:
    """A recorded method (a trial's `method_json`) back as a method; a program's source comes
    from the sources this process knows (loaded from `method_programs` on resume)."""
    payload = json.loads(method_json)
    if payload.get("kind") == "program":
        return ProgramMethod(**payload, source=source_of(payload["program_id"]))
    return MethodSpec.model_validate(payload)


def method_from_dump(payload: dict) -> Method:
    """A method from its full dump (a study config's `candidate_method`, source included)."""
    if payload.get("kind") == "program":
        return ProgramMethod.model_validate(payload)
    return MethodSpec.model_validate(payload)


def describe_recorded(method_json: str) -> str:
    """A recorded method in a few words, without needing a program's source."""
    payload = json.loads(method_json)
    if payload.get("kind") == "program":
        return describe_program(payload["name"], payload["program_id"], payload["params"])
    return MethodSpec.model_validate(payload).describe()


def family_of(method_json: str) -> str:
    """A recorded method's family, without needing a program's source."""
    payload = json.loads(method_json)
    if payload.get("kind") == "program":
        return f"program:{payload['name']}"
    return MethodSpec.model_validate(payload).family


def resolve_any_method(reference: str, params: dict[str, str] | None = None) -> Method:
    """A preset name, a MethodSpec JSON or a program file (`.py`, with `params`)."""
    if reference.endswith(".py"):
        return load_program(Path(reference), params)
    if params:
        raise LabgapInputError(f"parameters apply to a program (.py), not to {reference!r}")
    return resolve_method(reference)


def method_label(method: Method) -> str:
    """A short name: the preset's, the program's, or the method hash."""
    if isinstance(method, ProgramMethod):
        return method.name
    return preset_name(method) or method.method_hash
