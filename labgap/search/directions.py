"""Research directions: each agent starts from its own region of the method space.

The seed study found that identical agents collapse onto one idea; giving each agent a different
direction (a subset of `MethodSpec`'s ranges, as space.py's dimensions, with everything else at its
default) keeps the search diverse. A direction is plain data, so any agent backend can use it: the
embedded agent turns it into an optimiser's search space, an LLM agent reads its title,
description and `space_summary`.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.programs.catalog import library_program
from labgap.programs.method import ParamRange, ProgramMethod
from labgap.search.space import Choice, Dimension, FloatRange, IntRange


class ResearchDirection(BaseModel):
    """A region of the method space one agent starts from: fixed fields, searched fields, and
    MethodSpec defaults (the task's recipe for training dynamics) for everything else. A
    direction that owns a library `program` searches that program's `PARAMS` instead."""

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
    program: str | None = Field(
        None, description="a library program whose PARAMS the space searches (instead of fields)"
    )

    @model_validator(mode="after")
    def _check_within_method_space(self) -> "ResearchDirection":
        """Every value the space can produce must be a valid method. MethodSpec's constraints
        are per field and its float ranges are intervals, so checking each float range's ends and
        every integer and option, one field at a time, covers the whole space."""
        if self.program is not None:
            return self._check_within_program()
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

    def _check_within_program(self) -> "ResearchDirection":
        program = library_program(self.program)
        space = program.param_space
        unknown = (set(self.fixed) | set(self.space)) - set(space)
        if unknown:
            raise ValueError(f"not parameters of program {self.program!r}: {sorted(unknown)}")
        for name, dimension in self.space.items():
            for value in _values_to_check(dimension):
                try:
                    space[name].coerce(value)
                except ValueError as error:
                    raise ValueError(f"direction {self.key!r}: {name}: {error}") from None
        return self

    def method_from_params(self, params: dict[str, Any]) -> Method:
        """The method for one point of the space (raw optimiser values are rounded here)."""
        values = {name: self.space[name].value(params[name]) for name in self.space}
        if self.program is not None:
            return library_program(self.program).with_params({**self.fixed, **values})
        return MethodSpec(**self.fixed, **values)

    def params_for(self, method: Method) -> dict[str, Any] | None:
        """The searched values of `method` if it lies in this direction's space, else None."""
        if self.program is not None or not isinstance(method, MethodSpec):
            return self._program_params_for(method)
        defaults = MethodSpec(**self.fixed)
        for name in MethodSpec.model_fields:
            value = getattr(method, name)
            if name in self.space:
                if not self.space[name].contains(value):
                    return None
            elif value != getattr(defaults, name):
                return None
        return {name: getattr(method, name) for name in self.space}

    def _program_params_for(self, method: Method) -> dict[str, Any] | None:
        if not isinstance(method, ProgramMethod) or self.program is None:
            return None
        if method.program_id != library_program(self.program).program_id:
            return None
        if any(method.params.get(name) != value for name, value in self.fixed.items()):
            return None
        searched = {name: method.params.get(name) for name in self.space}
        contained = all(self.space[n].contains(v) for n, v in searched.items())
        return searched if contained else None

    @property
    def space_summary(self) -> str:
        """One line, e.g. "loss ∈ {logconf, bootstrap}; aux_weight 0.2–1; others default"."""
        parts = [f"{name}={value}" for name, value in self.fixed.items()]
        for name, dimension in self.space.items():
            separator = " ∈ " if isinstance(dimension, Choice) else " "
            parts.append(f"{name}{separator}{dimension.summary()}")
        if self.program is not None:
            return f"library program {self.program}: " + "; ".join(parts)
        return "; ".join(parts) + "; other fields at their defaults"


def program_space(program: str) -> dict[str, Dimension]:
    """A library program's declared `PARAMS` as a search space."""
    return {name: _dimension(spec) for name, spec in library_program(program).param_space.items()}


def _dimension(spec: ParamRange) -> FloatRange | IntRange | Choice:
    if spec.type == "float":
        return FloatRange(low=spec.low, high=spec.high, log=spec.log)
    if spec.type == "int":
        return IntRange(low=int(spec.low), high=int(spec.high), log=spec.log)
    if spec.type == "bool":
        return Choice(options=(False, True))
    return Choice(options=tuple(spec.values))


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
        key="em-relabel",
        title="EM relabelling (library program)",
        description=(
            "Treat the teacher as a noisy annotator and the strong view as a classifier, and learn "
            "both by EM (Dawid & Skene 1979; Raykar et al. 2010): tune how far to trust each."
        ),
        program="em_relabel",
        space={
            "iterations": IntRange(low=1, high=8),
            "teacher_temperature": FloatRange(low=0.25, high=4.0, log=True),
            "strong_weight": FloatRange(low=0.0, high=2.0),
            "teacher_mix": FloatRange(low=0.0, high=1.0),
        },
    ),
    ResearchDirection(
        key="overlap-filter",
        title="Overlap-density filtering (library program)",
        description=(
            "Drop the rows where the teacher only guesses and up-weight the overlap rows where "
            "its easy patterns meet hard ones (Shin, Cooper & Sala 2024)."
        ),
        program="overlap_filter",
        space={
            "hard_fraction": FloatRange(low=0.0, high=0.7),
            "overlap_fraction": FloatRange(low=0.1, high=1.0),
            "overlap_boost": FloatRange(low=1.0, high=5.0),
            "agreement_k": Choice(options=(0, 10, 20, 40)),
        },
    ),
    ResearchDirection(
        key="co-training",
        title="Co-training (library program)",
        description=(
            "Two students on two views of the strong features teach each other on the rows each "
            "is confident about (Blum & Mitchell 1998)."
        ),
        program="co_training",
        space={
            "rounds": IntRange(low=1, high=4),
            "pool_fraction": FloatRange(low=0.1, high=1.0),
            "train_mix": FloatRange(low=0.0, high=1.0),
            "hard_pseudo_labels": Choice(options=(False, True)),
        },
    ),
    ResearchDirection(
        key="curriculum",
        title="Curriculum self-training (library program)",
        description=(
            "Start from the teacher's most confident rows, grow the set stage by stage and relabel "
            "with the student's own predictions, weighting rows by confidence."
        ),
        program="curriculum_self_training",
        space={
            "stages": IntRange(low=1, high=5),
            "start_fraction": FloatRange(low=0.1, high=1.0),
            "confidence_power": FloatRange(low=0.0, high=4.0),
            "self_mix": FloatRange(low=0.0, high=1.0),
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
