"""What a Claude agent's tools take: their input models, validated strictly (nothing coerced), a
method as the model names it (a MethodSpec, or a program by id and parameter values), and
validation errors as the model reads them."""

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from labgap.llm.settings import CLAUDE_MAX_SEEDS as MAX_SEEDS
from labgap.methods.spec import MethodSpec
from labgap.programs.method import MAX_SOURCE_CHARS, ParamValue

MAX_METHODS_PER_CALL = 5
MAX_RATIONALE_CHARS = 2000
PROGRAM_ID_PATTERN = r"^[0-9a-f]{16}$"
PROGRAM_NAME_PATTERN = r"^[a-z0-9_-]{1,40}$"


class ProgramRef(BaseModel):
    """A program where a tool takes a method: its id and parameter values (omitted: defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    program_id: str = Field(pattern=PROGRAM_ID_PATTERN)
    params: dict[str, ParamValue] = Field(default_factory=dict)


UNION_TAGS = ("method_spec", "program_ref")
"""The tags of `MethodChoice`'s branches: left out of the error locations the model is shown."""


def _method_kind(value: Any) -> str | None:
    if isinstance(value, ProgramRef) or (isinstance(value, dict) and "program_id" in value):
        return "program_ref"
    if isinstance(value, MethodSpec | dict):
        return "method_spec"
    return None


MethodChoice = Annotated[
    Annotated[MethodSpec, Tag("method_spec")] | Annotated[ProgramRef, Tag("program_ref")],
    Discriminator(
        _method_kind,
        custom_error_type="method",
        custom_error_message='expected a MethodSpec object or {"program_id": ..., "params": {...}}',
    ),
]
"""A method as a tool's input names it: a MethodSpec, or a reference to a program."""


class RunExperimentsInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    methods: list[MethodChoice] = Field(min_length=1, max_length=MAX_METHODS_PER_CALL)
    n_seeds: int | None = Field(None, ge=1, le=MAX_SEEDS)


class MethodChoiceInput(BaseModel):
    """The input of `post_finding` and `submit_method`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    method: MethodChoice
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE_CHARS)


class WriteProgramInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(pattern=PROGRAM_NAME_PATTERN)
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE_CHARS)


class ReadProgramInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    program_id: str = Field(pattern=PROGRAM_ID_PATTERN)


class NoInput(BaseModel):
    """The input of `describe_method_space` and `read_forum`: nothing."""

    model_config = ConfigDict(extra="forbid", strict=True)


Input = TypeVar("Input", bound=BaseModel)


def parse_input(model: type[Input], tool_input: dict[str, Any]) -> Input:
    """A tool's input, validated strictly (nested `MethodSpec`s included): the model must send
    `2`, not `"2"`, and `true`, not `"yes"`; nothing is silently coerced."""
    return model.model_validate(tool_input, strict=True)


def describe_validation_error(error: ValidationError) -> str:
    """Pydantic's errors, one line each, without its documentation links."""
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc'] if p not in UNION_TAGS) or 'input'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )
