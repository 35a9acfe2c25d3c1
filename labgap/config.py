"""The study configuration: what a replication study runs, validated before anything runs.

Profiles (`quick`, `default`, `full`) are named starting points; any field given explicitly wins.
The study id defaults to the study name plus a hash of the configuration, so re-running the same
configuration resumes the same study instead of starting a new one.
"""

import hashlib
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from labgap.data.tasks import BUILTIN_TASKS, TaskSpec, read_config_file, resolve_task
from labgap.errors import LabgapInputError, describe_validation
from labgap.llm.settings import CLAUDE_MAX_SEEDS, ClaudeSettings
from labgap.methods.kinds import resolve_any_method
from labgap.methods.spec import MethodSpec
from labgap.profiles import PROFILES
from labgap.programs.method import ParamValue, ProgramMethod
from labgap.programs.sandbox import SandboxLimits
from labgap.stats.sequential import Design, Schedule

Profile = Literal["quick", "default", "full"]
AgentBackend = Literal["embedded", "claude"]

FROM_PROFILE = "empty: from the profile"

OPERATIONAL_CLAUDE_SETTINGS = (
    "base_url",
    "max_concurrent_requests",
    "request_timeout_seconds",
    "max_attempts",
    "backoff_base_seconds",
    "backoff_cap_seconds",
    "max_retry_after_seconds",
)
"""Claude settings that change how requests are sent, not what the agents do or see."""

BuiltinTaskName = Literal[tuple(BUILTIN_TASKS)]  # type: ignore[valid-type]
TaskFile = Annotated[
    str, StringConstraints(pattern=r"\.(ya?ml|json)$"), Field(title="task file (.yaml/.json)")
]
TaskRef = BuiltinTaskName | TaskSpec | TaskFile
"""A built-in task by name or a task spec. A task file's path is read into its spec before the
union is checked; the `TaskFile` branch is there so forms and API clients may send a path."""

MethodRef = ProgramMethod | MethodSpec | str
"""A method under test: a program file (.py) or preset name or MethodSpec JSON is read into its
method before the union is checked; the `str` branch is there so forms may send a path."""

ADDED_FIELDS = (
    "candidate_method",
    "candidate_params",
    "sandbox",
    "allow_unsandboxed_programs",
    "trial_timeout_seconds",
)
"""Fields added after studies were first recorded: at their defaults they stay out of the config
hash, so a study that does not use them keeps its id."""


RESERVED_TASK_NAMES = ("overall", "known-methods", "generalisation", "production")
"""Names of the verdict rows that sit beside the tasks' rows in `gap_results`."""

SEQUENTIAL_FIELDS = ("design", "seeds_per_look", "max_seeds", "replication_budget")
"""The sequential design's fields: a fixed-design study hashes without them, as it did before
the design could be chosen, so it keeps its id."""


class StudyConfig(BaseModel):
    """A replication study: lab search by agents, fresh-seed confirmation, transfer, verdict."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        "rt-replication",
        min_length=1,
        max_length=80,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="a plain name (letters, digits, . _ -, starting with a letter or digit); "
        "studies with the same name form a history (gap trend, alerts)",
    )
    study_id: str | None = Field(
        None,
        max_length=120,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="leave empty for name + config hash; give an existing id to resume it",
    )
    profile: Profile = Field("default", description="named starting point for the sizes below")
    seed: int | None = Field(
        0,
        ge=0,
        le=100_000,
        description="every seed in the study derives from it; empty: the run's date (recurring runs)",
    )
    lab_task: TaskRef = Field(
        "rt-lab", description="where the agents search: a built-in task or a .yaml/.json task file"
    )
    heldout_tasks: list[TaskRef] | None = Field(
        None, description=f"other data the lab winner is tried on; {FROM_PROFILE}"
    )
    production_targets: list[TaskRef] | None = Field(
        None, description=f"production-like variants of the lab task; {FROM_PROFILE}"
    )
    n_agents: int | None = Field(
        None,
        ge=1,
        le=32,
        title="Agents (1–32)",
        description=f"parallel research agents; {FROM_PROFILE}",
    )
    rounds: int | None = Field(
        None,
        ge=1,
        le=50,
        title="Rounds (1–50)",
        description=f"propose → run → score → post cycles; {FROM_PROFILE}",
    )
    proposals_per_round: int | None = Field(
        None,
        ge=1,
        le=20,
        title="Proposals per round (1–20)",
        description=f"methods per agent per round; {FROM_PROFILE}",
    )
    quick_seeds: int | None = Field(
        None,
        ge=1,
        le=20,
        title="Search seeds (1–20)",
        description=f"seeds per proposal during the search; {FROM_PROFILE}",
    )
    confirmation_seeds: int | None = Field(
        None,
        ge=2,
        le=100,
        title="Confirmation seeds (2–100)",
        description="fresh paired seeds per task at the first look (the fixed design: all of "
        f"them); {FROM_PROFILE}",
    )
    design: Design | None = Field(
        None,
        description="sequential: add seeds in looks while a verdict is open (repeated "
        f"intervals keep the error rates); fixed: one look; {FROM_PROFILE}",
    )
    seeds_per_look: int | None = Field(
        None,
        ge=1,
        le=100,
        title="Seeds per look (1–100)",
        description=f"sequential design: seeds added to an open question per look; {FROM_PROFILE}",
    )
    max_seeds: int | None = Field(
        None,
        ge=2,
        le=400,
        title="Seed cap per task (2–400)",
        description=f"sequential design: the most fresh seeds any task gets; {FROM_PROFILE}",
    )
    replication_budget: int | None = Field(
        None,
        ge=1,
        le=100_000,
        title="Replication budget (trials)",
        description="sequential design: the most confirmation and transfer trials a study runs; "
        f"a batch that does not fit is not started; {FROM_PROFILE}",
    )
    scoring_budget: int | None = Field(
        None,
        ge=1,
        le=10_000,
        title="Scoring budget (1–10000)",
        description="dev-scoring calls per agent; empty: rounds × proposals per round",
    )
    alpha: float = Field(
        0.05, gt=0.0, lt=0.5, title="α (0–0.5)", description="family-wise error rate of verdicts"
    )
    rho_min: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        title="ρ_min (0–1)",
        description="pre-registered share of the lab effect a target must keep",
    )
    agent_backend: AgentBackend = Field(
        "embedded", description="who proposes methods: embedded (offline) or claude (API key)"
    )
    claude: ClaudeSettings | None = Field(
        None,
        validate_default=True,
        title="Claude settings",
        description="claude backend only: model, limits, prices and budgets; empty: the defaults",
    )
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        title="Workers (1–64)",
        description="parallel experiment workers; empty: the CPU count",
    )
    executor: Literal["process", "thread", "dask"] = Field(
        "process",
        description="experiments in worker processes (parallel), threads (debugging) or on a "
        "Dask cluster (several machines)",
    )
    dask_address: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[a-z]+://\S+$",
        description="dask executor only: a running scheduler, e.g. tcp://host:8786; empty: a "
        "local Dask cluster of `workers` processes",
    )

    candidate_method: MethodRef | None = Field(
        None,
        title="Method to replicate",
        description="skip the agent search: this method is the lab winner (a program .py file, a "
        "preset name or a MethodSpec); empty: the agents search",
    )
    candidate_params: dict[str, ParamValue] | None = Field(
        None, description="parameter values for a candidate program (its PARAMS)"
    )
    sandbox: SandboxLimits = Field(
        default_factory=SandboxLimits,
        title="Program sandbox limits",
        description="CPU, memory, file size, processes and wall-clock limits of each program run",
    )
    trial_timeout_seconds: float = Field(
        900.0,
        gt=0.0,
        le=86_400.0,
        title="Trial timeout (seconds)",
        description="wall-clock limit of one MethodSpec trial's training (programs have the "
        "sandbox's); a trial past it fails, recorded and never retried. The default is ~5x the "
        "most expensive MethodSpec on the lab task",
    )
    allow_unsandboxed_programs: bool = Field(
        False,
        description="run agent-written programs even where this machine cannot isolate them "
        "(no network namespace or filesystem view); off: such programs are refused",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Empty or missing sizes come from the profile (what an untouched UI form sends)."""
        if isinstance(data, dict):
            profile = data.get("profile") or "default"
            if isinstance(profile, str) and profile in PROFILES:
                given = {
                    k: v for k, v in data.items() if v is not None or k not in PROFILES[profile]
                }
                data = {**PROFILES[profile], **given}
        return data

    @field_validator("lab_task", "heldout_tasks", "production_targets", mode="before")
    @classmethod
    def _read_tasks(cls, value):
        """Built-in names stay names; a task file is read (and validated) into its spec."""
        if isinstance(value, list):
            return [cls._read_tasks(ref) for ref in value]
        if isinstance(value, str) and value not in BUILTIN_TASKS:
            try:
                return resolve_task(value)
            except LabgapInputError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _read_candidate(cls, data: Any) -> Any:
        """A program path, preset name or JSON is read into its method, with its parameters."""
        if not isinstance(data, dict):
            return data
        reference, params = data.get("candidate_method"), data.get("candidate_params")
        if isinstance(reference, str):
            try:
                method = resolve_any_method(reference, params)
            except LabgapInputError as error:
                raise ValueError(f"candidate_method: {error}") from None
            data = {**data, "candidate_method": method}
        elif params and isinstance(reference, ProgramMethod):
            data = {**data, "candidate_method": reference.with_params(params)}
        return data

    @field_validator("claude", mode="after")
    @classmethod
    def _default_claude(cls, value: ClaudeSettings | None) -> ClaudeSettings:
        return value if value is not None else ClaudeSettings()

    @model_validator(mode="after")
    def _check_tasks(self) -> "StudyConfig":
        names = [task.name for task in self.targets()] + [self.lab().name]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct across lab and targets: {names}")
        reserved = sorted(set(names) & set(RESERVED_TASK_NAMES))
        if reserved:
            raise ValueError(
                f"task name {reserved[0]!r} is reserved for a verdict row; rename the task"
            )
        if not self.heldout_tasks and not self.production_targets:
            raise ValueError("give at least one held-out task or production target")
        return self

    @model_validator(mode="after")
    def _check_looks(self) -> "StudyConfig":
        if self.design == "sequential" and self.max_seeds < self.confirmation_seeds:
            raise ValueError(
                f"max_seeds: {self.max_seeds} is below confirmation_seeds "
                f"({self.confirmation_seeds}), the first look's seeds"
            )
        return self

    @model_validator(mode="after")
    def _check_dask_address(self) -> "StudyConfig":
        """An address the process or thread executor would silently ignore is a mistake."""
        if self.dask_address and self.executor != "dask":
            raise ValueError(f"dask_address needs executor: dask, not {self.executor!r}")
        return self

    @model_validator(mode="after")
    def _check_claude_seeds(self) -> "StudyConfig":
        """A Claude agent can ask for at most CLAUDE_MAX_SEEDS seeds per method, and a method
        needs quick_seeds to win: above the cap, a study would spend its LLM budget for nothing."""
        if self.agent_backend == "claude" and self.quick_seeds > CLAUDE_MAX_SEEDS:
            raise ValueError(
                f"quick_seeds={self.quick_seeds} is more than the claude backend's limit of "
                f"{CLAUDE_MAX_SEEDS} seeds per method: no method a Claude agent can have scored "
                f"would be eligible to win; use quick_seeds <= {CLAUDE_MAX_SEEDS}"
            )
        return self

    def with_resolved_seed(self, today: date | None = None) -> "StudyConfig":
        """A recurring study (seed left empty) gets fresh seeds each day: days since 2024-01-01."""
        if self.seed is not None:
            return self
        day = today or datetime.now(UTC).date()
        return self.model_copy(update={"seed": (day - date(2024, 1, 1)).days})

    def lab(self) -> TaskSpec:
        return as_task(self.lab_task)

    def targets(self) -> list[TaskSpec]:
        return [as_task(ref) for ref in [*self.heldout_tasks, *self.production_targets]]

    def target_roles(self) -> dict[str, str]:
        roles = {as_task(ref).name: "heldout" for ref in self.heldout_tasks}
        roles.update({as_task(ref).name: "production" for ref in self.production_targets})
        return roles

    @property
    def budget(self) -> int:
        return self.scoring_budget or self.rounds * self.proposals_per_round

    @property
    def config_hash(self) -> str:
        """Hashes what changes the numbers: not where or how fast they are computed, nor the
        Claude settings of an embedded study, nor the API endpoint, retries or concurrency."""
        body = self.model_dump(
            mode="json", exclude={"study_id", "workers", "executor", "dask_address"}
        )
        if self.design == "fixed":
            for key in SEQUENTIAL_FIELDS:
                del body[key]
        for key in ADDED_FIELDS:
            if getattr(self, key) == StudyConfig.model_fields[key].get_default(
                call_default_factory=True
            ):
                del body[key]
        if self.agent_backend == "embedded":
            del body["claude"]
        else:
            for key in OPERATIONAL_CLAUDE_SETTINGS:
                body["claude"].pop(key, None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def resolved_study_id(self) -> str:
        return self.study_id or f"{self.name}-{self.config_hash}"

    def search_seeds(self, count: int | None = None) -> list[int]:
        return [self.seed * 1000 + i for i in range(count or self.quick_seeds)]

    def fresh_seeds(self, count: int | None = None) -> list[int]:
        """Seeds never used in the search: the winner's-curse check and transfer trials use them
        (the first `count`; every task's look k uses the same first seeds)."""
        return [self.seed * 1000 + 500 + i for i in range(count or self.confirmation_seeds)]

    @property
    def schedule(self) -> Schedule:
        """Each task's planned looks (one look of `confirmation_seeds` with the fixed design)."""
        if self.design == "fixed":
            n = self.confirmation_seeds
            return Schedule(start=n, batch=1, cap=n)
        return Schedule(
            start=self.confirmation_seeds, batch=self.seeds_per_look, cap=self.max_seeds
        )


def as_task(ref: TaskRef) -> TaskSpec:
    return ref if isinstance(ref, TaskSpec) else resolve_task(ref)


def load_study_config(path: Path | None = None, **overrides: Any) -> StudyConfig:
    """A config from a YAML/JSON file (optional) with overrides on top; errors listed at once."""
    body: dict[str, Any] = read_config_file(path, "config file") if path else {}
    body.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return StudyConfig.model_validate(body)
    except ValidationError as error:
        raise LabgapInputError(
            describe_validation(error, str(path) if path else "study config")
        ) from None
