"""Research directions: each agent starts from its own region of the method space.

The seed study found that identical agents collapse onto one idea; giving each agent a different
direction (a subset of `MethodSpec`'s ranges, with everything else at its default) keeps the search
diverse. A direction is plain data, so any agent backend can use it: the embedded agent turns it
into an optimiser's search space, an LLM agent reads its title, description and `space_summary`.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labgap.methods.spec import MethodSpec

ChoiceValue = bool | int | float | str | None


class _Interval(BaseModel):
    """Shared bounds check of the numeric ranges."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    log: bool = False

    @model_validator(mode="after")
    def _check_bounds(self):
        if not self.low < self.high:
            raise ValueError(f"empty range [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs a positive lower bound")
        return self


class FloatRange(_Interval):
    """A continuous interval. Sampled values are rounded (3 decimals, or 3 significant digits on a
    log scale) so methods stay readable and near-identical methods count as repeats."""

    kind: Literal["float"] = "float"
    low: float
    high: float

    def value(self, raw: float) -> float:
        rounded = float(f"{raw:.3g}") if self.log else round(raw, 3)
        return min(max(rounded, self.low), self.high)

    def contains(self, value: Any) -> bool:
        """In range and on the rounding grid, i.e. a value this range can produce."""
        return (
            isinstance(value, float)
            and self.low <= value <= self.high
            and self.value(value) == value
        )

    def summary(self) -> str:
        return f"{self.low:g}–{self.high:g}" + (" (log)" if self.log else "")


class IntRange(_Interval):
    """An integer interval (inclusive)."""

    kind: Literal["int"] = "int"
    low: int
    high: int

    def value(self, raw: int) -> int:
        return int(raw)

    def contains(self, value: Any) -> bool:
        return type(value) is int and self.low <= value <= self.high

    def summary(self) -> str:
        return f"{self.low}–{self.high}" + (" (log)" if self.log else "")


class Choice(BaseModel):
    """A finite set of options."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["choice"] = "choice"
    options: tuple[ChoiceValue, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_unique(self) -> "Choice":
        if len({(type(option), option) for option in self.options}) != len(self.options):
            raise ValueError(f"repeated options in {self.options}")
        return self

    def value(self, raw: ChoiceValue) -> ChoiceValue:
        return raw

    def contains(self, value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in self.options)

    def summary(self) -> str:
        return "{" + ", ".join(str(option) for option in self.options) + "}"


Dimension = Annotated[FloatRange | IntRange | Choice, Field(discriminator="kind")]


class ResearchDirection(BaseModel):
    """A region of the method space one agent starts from: fixed fields, searched fields, and
    MethodSpec defaults (the task's recipe for training dynamics) for everything else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", description="a stable slug")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1, description="one or two sentences: the idea to pursue")
    fixed: dict[str, Any] = Field(
        default_factory=dict, description="MethodSpec fields held at a non-default value"
    )
    space: dict[str, Dimension] = Field(
        min_length=1, description="MethodSpec fields searched, each a subset of its valid range"
    )

    @model_validator(mode="after")
    def _check_within_method_space(self) -> "ResearchDirection":
        """Every value the space can produce must be a valid MethodSpec. MethodSpec's constraints
        are per field and its float ranges are intervals, so checking each float range's ends and
        every integer and option, one field at a time, covers the whole space."""
        unknown = (set(self.fixed) | set(self.space)) - set(MethodSpec.model_fields)
        if unknown:
            raise ValueError(f"not MethodSpec fields: {sorted(unknown)}")
        both = set(self.fixed) & set(self.space)
        if both:
            raise ValueError(f"fields both fixed and searched: {sorted(both)}")
        MethodSpec(**self.fixed)
        for name, dimension in self.space.items():
            for value in _values_to_check(dimension):
                try:
                    MethodSpec(**self.fixed, **{name: value})
                except ValueError as error:
                    raise ValueError(
                        f"direction {self.key!r}: {name}={value!r} is outside the method space"
                    ) from error
        return self

    def method_from_params(self, params: dict[str, Any]) -> MethodSpec:
        """The method for one point of the space (raw optimiser values are rounded here)."""
        values = {name: self.space[name].value(params[name]) for name in self.space}
        return MethodSpec(**self.fixed, **values)

    def params_for(self, method: MethodSpec) -> dict[str, Any] | None:
        """The searched values of `method` if it lies in this direction's space, else None."""
        defaults = MethodSpec(**self.fixed)
        for name in MethodSpec.model_fields:
            value = getattr(method, name)
            if name in self.space:
                if not self.space[name].contains(value):
                    return None
            elif value != getattr(defaults, name):
                return None
        return {name: getattr(method, name) for name in self.space}

    @property
    def space_summary(self) -> str:
        """One line, e.g. "loss ∈ {logconf, bootstrap}; aux_weight 0.2–1; others default"."""
        parts = [f"{name}={value}" for name, value in self.fixed.items()]
        for name, dimension in self.space.items():
            separator = " ∈ " if isinstance(dimension, Choice) else " "
            parts.append(f"{name}{separator}{dimension.summary()}")
        return "; ".join(parts) + "; other fields at their defaults"


def _values_to_check(dimension: FloatRange | IntRange | Choice) -> list[Any]:
    if isinstance(dimension, FloatRange):
        return [dimension.low, dimension.high]
    if isinstance(dimension, IntRange):
        return list(range(dimension.low, dimension.high + 1))
    return list(dimension.options)


DIRECTIONS: list[ResearchDirection] = [
    ResearchDirection(
        key="loss-design",
        title="Loss design",
        description=(
            "Add an auxiliary term that lets the student trust its own view (logconf, bootstrap or "
            "product loss); tune how strong it is and how slowly it ramps up."
        ),
        space={
            "loss": Choice(options=("logconf", "bootstrap", "product")),
            "aux_weight": FloatRange(low=0.2, high=1.0),
            "warmup": FloatRange(low=0.0, high=0.5),
        },
    ),
    ResearchDirection(
        key="label-filtering",
        title="Label filtering",
        description=(
            "Train only on the teacher's most confident labels, as soft probabilities or hardened "
            "to its argmax, so the student does not imitate the teacher's mistakes."
        ),
        space={
            "confident_fraction": FloatRange(low=0.3, high=1.0),
            "hard_labels": Choice(options=(False, True)),
        },
    ),
    ResearchDirection(
        key="knn-relabel",
        title="Relabelling in the strong view",
        description=(
            "Smooth the teacher's labels over neighbours in the strong model's representation, "
            "where similar examples should share a label."
        ),
        space={
            "knn_k": IntRange(low=5, high=50, log=True),
            "knn_mix": FloatRange(low=0.1, high=1.0),
        },
    ),
    ResearchDirection(
        key="training-dynamics",
        title="Training dynamics",
        description=(
            "Change how long and how fast the student learns: stopping early keeps it from "
            "fitting the teacher's errors."
        ),
        space={
            "epochs": IntRange(low=1, high=40, log=True),
            "lr": FloatRange(low=1e-4, high=1e-2, log=True),
            "batch_size": IntRange(low=32, high=512, log=True),
        },
    ),
    ResearchDirection(
        key="self-training",
        title="Self-training",
        description=(
            "Retrain the student on its own predictions, optionally keeping only its confident or "
            "hardened labels, so it moves away from the teacher toward what it can learn itself."
        ),
        space={
            "self_training_rounds": Choice(options=(1, 2)),
            "confident_fraction": FloatRange(low=0.5, high=1.0),
            "hard_labels": Choice(options=(False, True)),
        },
    ),
    ResearchDirection(
        key="regularisation",
        title="Regularisation",
        description=(
            "Limit the student's capacity to memorise the teacher's errors: weight decay, "
            "dropout, label smoothing and the size of its hidden layer."
        ),
        space={
            "weight_decay": FloatRange(low=0.0, high=0.1),
            "dropout": FloatRange(low=0.0, high=0.5),
            "label_smoothing": FloatRange(low=0.0, high=0.3),
            "hidden": Choice(options=(0, 64, 256, 1024)),
        },
    ),
    ResearchDirection(
        key="teacher-student-mixing",
        title="Teacher–student mixing",
        description=(
            "Blend the teacher's targets with the student's own (bootstrap or product), applied "
            "from the start, with hard or smoothed teacher labels."
        ),
        space={
            "loss": Choice(options=("bootstrap", "product")),
            "aux_weight": FloatRange(low=0.05, high=0.8),
            "hard_labels": Choice(options=(False, True)),
            "label_smoothing": FloatRange(low=0.0, high=0.2),
        },
    ),
    ResearchDirection(
        key="data-selection",
        title="Data reweighting and selection",
        description=(
            "Keep a confident subset of the teacher's labels and soften what is kept with label "
            "smoothing, trading quantity of supervision against its quality."
        ),
        space={
            "confident_fraction": FloatRange(low=0.3, high=0.9),
            "label_smoothing": FloatRange(low=0.02, high=0.3),
        },
    ),
    ResearchDirection(
        key="combinations",
        title="Combinations",
        description=(
            "Search the whole method space at once, combining losses, label handling, relabelling, "
            "self-training and training settings."
        ),
        space={
            "loss": Choice(options=("xent", "logconf", "bootstrap", "product")),
            "aux_weight": FloatRange(low=0.0, high=1.0),
            "warmup": FloatRange(low=0.0, high=0.5),
            "hard_labels": Choice(options=(False, True)),
            "label_smoothing": FloatRange(low=0.0, high=0.3),
            "confident_fraction": FloatRange(low=0.3, high=1.0),
            "knn_k": Choice(options=(0, 5, 10, 20, 50)),
            "knn_mix": FloatRange(low=0.0, high=1.0),
            "self_training_rounds": IntRange(low=0, high=2),
            "epochs": IntRange(low=1, high=40, log=True),
            "lr": FloatRange(low=1e-4, high=1e-2, log=True),
            "weight_decay": FloatRange(low=0.0, high=0.1),
            "hidden": Choice(options=(0, 64, 256, 1024)),
            "dropout": FloatRange(low=0.0, high=0.5),
            "batch_size": IntRange(low=32, high=512, log=True),
        },
    ),
]

_BY_KEY = {direction.key: direction for direction in DIRECTIONS}


def direction_by_key(key: str) -> ResearchDirection:
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(
            f"unknown research direction {key!r}; expected one of {list(_BY_KEY)}"
        ) from None


def assign_directions(n_agents: int) -> list[ResearchDirection]:
    """One direction per agent, in `DIRECTIONS` order: distinct for up to len(DIRECTIONS) agents;
    beyond that agent i gets DIRECTIONS[i % len(DIRECTIONS)] (agents sharing a direction still
    differ through their seeds)."""
    if n_agents < 1:
        raise ValueError(f"n_agents must be at least 1, got {n_agents}")
    return [DIRECTIONS[index % len(DIRECTIONS)] for index in range(n_agents)]
