"""Method programs: a weak-to-strong method written as Python code, identified by its source.

A program is a source file with `fit_predict(data) -> probabilities` and an optional literal
`PARAMS` dict of tunable parameters. The host never executes it: the interface is checked from the
syntax tree (`ast`) and `PARAMS` is read with `ast.literal_eval`; only the sandbox runs it. A
program's identity is the hash of its source plus its parameter values, so every trial can be
traced to the exact code (stored once, in the `method_programs` table).
"""

import ast
import hashlib
import json
import math
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labgap.errors import LabgapInputError, describe_validation

ParamValue = bool | int | float | str
MAX_SOURCE_CHARS = 100_000


class ProgramError(LabgapInputError):
    """A program that cannot be a method: bad syntax, no `fit_predict`, bad `PARAMS` or values."""


class ParamRange(BaseModel):
    """One tunable parameter a program declares in `PARAMS`, with its valid range."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["int", "float", "bool", "choice"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: list[ParamValue] | None = None
    default: ParamValue

    @model_validator(mode="after")
    def _check_range(self) -> "ParamRange":
        if self.type in ("int", "float"):
            if self.low is None or self.high is None or not self.low <= self.high:
                raise ValueError(f"{self.type} needs low <= high")
            if self.log and self.low <= 0:
                raise ValueError("log scale needs low > 0")
        if self.type == "choice" and not self.values:
            raise ValueError("choice needs a non-empty list of values")
        self.coerce(self.default)
        return self

    def coerce(self, value: Any) -> ParamValue:
        """`value` as this parameter's type, within its range (strings from a command line too)."""
        if self.type == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            if isinstance(value, bool):
                return value
            raise ValueError(f"expected true or false, got {value!r}")
        if self.type == "choice":
            for option in self.values or []:
                if value == option or (isinstance(value, str) and str(option) == value):
                    return option
            raise ValueError(f"expected one of {self.values}, got {value!r}")
        number = _number(value, self.type)
        if not self.low <= number <= self.high:
            raise ValueError(f"expected {self.low:g}..{self.high:g}, got {number:g}")
        return number


def _number(value: Any, kind: str) -> int | float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    if kind == "int":
        if number != int(number):
            raise ValueError(f"expected an integer, got {value!r}")
        return int(number)
    return number


class ProgramMethod(BaseModel):
    """A program with its parameter values: a method like a `MethodSpec`, run in the sandbox."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["program"] = "program"
    name: str = Field(min_length=1, max_length=80, description="a label, e.g. the file's stem")
    program_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="sha256 of the source")
    params: dict[str, ParamValue] = Field(default_factory=dict)
    source: str = Field(repr=False, max_length=MAX_SOURCE_CHARS)

    @model_validator(mode="after")
    def _check_source(self) -> "ProgramMethod":
        if program_id(self.source) != self.program_id:
            raise ValueError("program_id is not the hash of the source")
        remember_source(self.source)
        return self

    def canonical_json(self) -> str:
        """What a trial records as its method: everything but the source (stored once)."""
        body = {"kind": self.kind, "name": self.name, "params": self.params}
        body["program_id"] = self.program_id
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @property
    def method_hash(self) -> str:
        """The source's hash plus the parameter values; the label does not change the identity."""
        identity = json.dumps([self.program_id, self.params], sort_keys=True)
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    @property
    def family(self) -> str:
        return f"program:{self.name}"

    def describe(self) -> str:
        return describe_program(self.name, self.program_id, self.params)

    @property
    def param_space(self) -> dict[str, ParamRange]:
        return declared_params(self.source, self.name)

    def with_params(self, values: dict[str, Any]) -> "ProgramMethod":
        return self.model_copy(update={"params": resolve_params(self.param_space, values)})


def describe_program(name: str, identity: str, params: dict[str, ParamValue]) -> str:
    values = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()]
    return " ".join([f"program {name} ({identity})", *values])


def program_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


_PARSING = threading.Lock()


def parse_source(source: str, origin: str = "<unknown>") -> ast.Module:
    """`ast.parse`, one thread at a time: CPython 3.11 converts a parse tree to Python objects in
    state every thread shares, and two conversions at once (agents of a round reading programs
    together) can fail with "SystemError: AST constructor recursion depth mismatch"
    (python/cpython#106905)."""
    with _PARSING:
        return ast.parse(source, filename=origin)


def declared_params(source: str, origin: str) -> dict[str, ParamRange]:
    """Check the interface without running the code: valid syntax, a top-level
    `fit_predict(data)`, and `PARAMS` (if any) a literal dict of valid parameter ranges."""
    if len(source) > MAX_SOURCE_CHARS:
        raise ProgramError(f"{origin}: the source is longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = parse_source(source, origin)
    except SyntaxError as error:
        raise ProgramError(f"{origin}: syntax error at line {error.lineno}: {error.msg}") from None
    entry = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "fit_predict"
    ]
    if not entry:
        raise ProgramError(f"{origin}: no top-level `def fit_predict(data)` found")
    arguments = entry[-1].args
    if isinstance(entry[-1], ast.AsyncFunctionDef) or len(arguments.args) != 1:
        raise ProgramError(f"{origin}: fit_predict must be a plain function of one argument, data")
    declared = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "PARAMS" for t in node.targets)
    ]
    if not declared:
        return {}
    try:
        raw = ast.literal_eval(declared[-1])
    except ValueError:
        raise ProgramError(f"{origin}: PARAMS must be a literal dict (no names or calls)") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ProgramError(f"{origin}: PARAMS must map parameter names to their ranges")
    space = {}
    for name, spec in raw.items():
        try:
            space[name] = ParamRange.model_validate(spec)
        except ValidationError as error:
            raise ProgramError(describe_validation(error, f"{origin}: PARAMS[{name!r}]")) from None
    return space


def resolve_params(space: dict[str, ParamRange], given: dict[str, Any]) -> dict[str, ParamValue]:
    """Declared defaults overridden by `given`; an unknown name or a bad value is an error."""
    unknown = sorted(set(given) - set(space))
    if unknown:
        known = ", ".join(sorted(space)) or "none"
        raise ProgramError(f"unknown parameter(s) {unknown}; the program declares: {known}")
    values = {}
    for name, spec in sorted(space.items()):
        try:
            values[name] = spec.coerce(given[name]) if name in given else spec.default
        except ValueError as error:
            raise ProgramError(f"parameter {name}: {error}") from None
    return values


def make_program(source: str, name: str, params: dict[str, Any] | None = None) -> ProgramMethod:
    """A checked program method (every program method's source is remembered, so recorded
    trials can be traced back to it)."""
    space = declared_params(source, name)
    return ProgramMethod(
        name=name,
        program_id=program_id(source),
        params=resolve_params(space, params or {}),
        source=source,
    )


def load_program(path: Path | str, params: dict[str, Any] | None = None) -> ProgramMethod:
    """A program file (`--method my_method.py`) with parameter values given by the caller."""
    file = Path(path)
    if file.suffix != ".py":
        raise ProgramError(f"{file}: a method program must be a .py file")
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProgramError(f"{file}: cannot read the program ({error})") from None
    try:
        return make_program(source, _label(file.stem), params)
    except ProgramError as error:
        message = str(error)
        raise ProgramError(
            message if message.startswith(str(file)) else f"{file}: {message}"
        ) from None


def _label(stem: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_-." else "-" for c in stem).strip("-.")
    return (cleaned or "program")[:80]


def parse_param_assignments(assignments: list[str]) -> dict[str, str]:
    """`k=20` strings from a command line into a dict (values are coerced by the program's ranges)."""
    values = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ProgramError(f"--param {item!r}: expected name=value, e.g. --param k=20")
        values[name.strip()] = value.strip()
    return values


_SOURCES: dict[str, str] = {}
_SOURCES_LOCK = threading.Lock()


def remember_source(source: str) -> str:
    """Keep a program's source by its id, so a trial's recorded method can be rebuilt. The map is
    content-addressed: an id names exactly one source, whoever adds it."""
    identity = program_id(source)
    with _SOURCES_LOCK:
        _SOURCES[identity] = source
    return identity


def source_of(identity: str) -> str:
    with _SOURCES_LOCK:
        source = _SOURCES.get(identity)
    if source is None:
        raise KeyError(f"program {identity} is not known here; load it from method_programs")
    return source
