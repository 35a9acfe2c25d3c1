"""Research directions: distinct, inside the method space, and assigned deterministically."""

import random

import pytest
from pydantic import ValidationError

from labgap.methods.spec import PRESETS, MethodSpec
from labgap.programs.catalog import library_program
from labgap.programs.method import ProgramMethod
from labgap.search.directions import (
    DIRECTIONS,
    ResearchDirection,
    assign_directions,
    direction_by_key,
)
from labgap.search.space import Choice, FloatRange, IntRange


def random_params(direction: ResearchDirection, rng: random.Random) -> dict:
    params = {}
    for name, dimension in direction.space.items():
        if isinstance(dimension, FloatRange):
            params[name] = rng.uniform(dimension.low, dimension.high)
        elif isinstance(dimension, IntRange):
            params[name] = rng.randint(dimension.low, dimension.high)
        else:
            params[name] = rng.choice(dimension.options)
    return params


def test_at_least_nine_distinct_directions():
    assert len(DIRECTIONS) >= 9
    assert len({direction.key for direction in DIRECTIONS}) == len(DIRECTIONS)
    assert len({direction.title for direction in DIRECTIONS}) == len(DIRECTIONS)
    regions = [(direction.fixed, direction.space) for direction in DIRECTIONS]
    for index, region in enumerate(regions):
        assert region not in regions[:index]
    assert all(10 < len(direction.description) < 300 for direction in DIRECTIONS)


KNOB_DIRECTIONS = [direction for direction in DIRECTIONS if direction.program is None]
PROGRAM_DIRECTIONS = [direction for direction in DIRECTIONS if direction.program is not None]


@pytest.mark.parametrize("direction", PROGRAM_DIRECTIONS, ids=lambda direction: direction.key)
def test_a_program_direction_tunes_its_programs_declared_parameters(direction):
    program = library_program(direction.program)
    rng = random.Random(0)
    methods = [direction.method_from_params(random_params(direction, rng)) for _ in range(100)]
    for method in methods:
        assert isinstance(method, ProgramMethod)
        assert method.program_id == program.program_id
        assert direction.params_for(method) == {
            name: method.params[name] for name in direction.space
        }
        for name, spec in program.param_space.items():
            if name not in direction.space:
                assert method.params[name] == spec.default
    assert len({method.method_hash for method in methods}) > 90
    assert direction.params_for(program) is not None  # agents start from the defaults
    assert direction.params_for(PRESETS["logconf"]) is None


def test_a_program_direction_outside_its_programs_parameters_is_rejected():
    with pytest.raises(ValidationError, match="not parameters of program"):
        ResearchDirection(
            key="bad", title="Bad", description="Invalid.", program="em_relabel",
            space={"aux_weight": FloatRange(low=0.0, high=1.0)},
        )  # fmt: skip
    with pytest.raises(ValidationError, match="iterations"):
        ResearchDirection(
            key="bad", title="Bad", description="Invalid.", program="em_relabel",
            space={"iterations": IntRange(low=0, high=30)},
        )  # fmt: skip


@pytest.mark.parametrize("direction", KNOB_DIRECTIONS, ids=lambda direction: direction.key)
def test_every_direction_only_produces_valid_methods(direction):
    rng = random.Random(0)
    corners = [
        {
            name: (dim.options[0] if isinstance(dim, Choice) else dim.low)
            for name, dim in direction.space.items()
        },
        {
            name: (dim.options[-1] if isinstance(dim, Choice) else dim.high)
            for name, dim in direction.space.items()
        },
    ]
    methods = [direction.method_from_params(params) for params in corners] + [
        direction.method_from_params(random_params(direction, rng)) for _ in range(300)
    ]
    for method in methods:
        assert MethodSpec.model_validate(method.model_dump()) == method
        assert direction.params_for(method) is not None
        for name in MethodSpec.model_fields:
            if name not in direction.space:
                expected = direction.fixed.get(name, MethodSpec.model_fields[name].default)
                assert getattr(method, name) == expected
    assert len({method.method_hash for method in methods}) > 100


def test_directions_overlap_little():
    """Apart from the deliberately wide `combinations`, most of what one direction explores lies
    outside every other direction: they start agents in different places."""
    rng = random.Random(2)
    samples = {
        direction.key: [
            direction.method_from_params(random_params(direction, rng)) for _ in range(200)
        ]
        for direction in DIRECTIONS
    }
    for explorer in DIRECTIONS:
        for other in DIRECTIONS:
            if other.key in (explorer.key, "combinations"):
                continue
            inside = [other.params_for(method) is not None for method in samples[explorer.key]]
            assert sum(inside) / len(inside) < 0.05, (explorer.key, other.key)


@pytest.mark.parametrize(
    ("space", "fixed"),
    [
        ({"aux_weight": FloatRange(low=0.0, high=1.5)}, {}),
        ({"knn_k": IntRange(low=0, high=10)}, {}),  # 1-4 are not valid kNN sizes
        ({"hidden": Choice(options=(64, 512))}, {}),
        ({"not_a_field": FloatRange(low=0.0, high=1.0)}, {}),
        ({"aux_weight": FloatRange(low=0.0, high=1.0)}, {"aux_weight": 0.5}),
        ({"aux_weight": FloatRange(low=0.0, high=1.0)}, {"epochs": 0}),
    ],
)
def test_a_direction_outside_the_method_space_is_rejected(space, fixed):
    with pytest.raises(ValidationError):
        ResearchDirection(key="bad", title="Bad", description="Invalid.", space=space, fixed=fixed)


def test_ranges_reject_empty_or_invalid_bounds():
    with pytest.raises(ValidationError):
        FloatRange(low=0.5, high=0.5)
    with pytest.raises(ValidationError):
        FloatRange(low=0.0, high=1.0, log=True)
    with pytest.raises(ValidationError):
        Choice(options=())
    with pytest.raises(ValidationError):
        Choice(options=("logconf", "logconf"))


def test_method_from_params_rounds_and_params_for_inverts_it():
    direction = direction_by_key("loss-design")
    method = direction.method_from_params(
        {"loss": "logconf", "aux_weight": 0.712345, "warmup": 0.2000001}
    )
    assert (method.aux_weight, method.warmup) == (0.712, 0.2)
    assert direction.params_for(method) == {"loss": "logconf", "aux_weight": 0.712, "warmup": 0.2}
    assert direction.params_for(PRESETS["vanilla"]) is None  # xent is not in this direction
    assert direction.params_for(method.model_copy(update={"epochs": 5})) is None
    assert direction.params_for(method.model_copy(update={"aux_weight": 0.7123})) is None

    training = direction_by_key("training-dynamics")
    assert training.method_from_params({"epochs": 3, "lr": 0.00123456, "batch_size": 64}).lr == (
        0.00123
    )


def test_directions_survive_a_json_round_trip():
    for direction in DIRECTIONS:
        assert ResearchDirection.model_validate_json(direction.model_dump_json()) == direction


def test_space_summary_names_every_searched_field():
    for direction in DIRECTIONS:
        summary = direction.space_summary
        assert all(name in summary for name in direction.space)
        assert "\n" not in summary


def test_assign_directions_is_distinct_then_cycles():
    assert assign_directions(9) == DIRECTIONS[:9]
    assert len({direction.key for direction in assign_directions(len(DIRECTIONS))}) == len(
        DIRECTIONS
    )
    assert assign_directions(3) == DIRECTIONS[:3]
    many = assign_directions(len(DIRECTIONS) + 2)
    assert many[len(DIRECTIONS) :] == DIRECTIONS[:2]
    with pytest.raises(ValueError):
        assign_directions(0)


def test_direction_by_key():
    for direction in DIRECTIONS:
        assert direction_by_key(direction.key) is direction
    with pytest.raises(KeyError, match="unknown research direction"):
        direction_by_key("telepathy")
