"""A Claude agent's tools: their schemas, input validation and the payloads the pipeline answers."""

import json

import pytest
from pydantic import ValidationError

from labgap.methods.spec import MethodSpec
from labgap.search.agent import ScoredMethod
from labgap.search.claude.inputs import (
    MAX_METHODS_PER_CALL,
    MAX_SEEDS,
    MethodChoiceInput,
    RunExperimentsInput,
    describe_validation_error,
)
from labgap.search.claude.tools import (
    TOOL_NAMES,
    TOOLS,
    ToolRefused,
    experiments_payload,
    finding_post,
)
from labgap.search.scoring import ScoringCall

LOGCONF, BOOTSTRAP = MethodSpec(loss="logconf"), MethodSpec(loss="bootstrap", aux_weight=0.5)


def test_the_run_experiments_schema_bounds_what_its_input_model_accepts():
    assert TOOL_NAMES == [
        "describe_method_space",
        "run_experiments",
        "read_forum",
        "post_finding",
        "submit_method",
        "write_program",
        "read_program",
    ]
    schema = TOOLS[TOOL_NAMES.index("run_experiments")]["input_schema"]
    assert schema["properties"]["methods"]["maxItems"] == MAX_METHODS_PER_CALL
    assert schema["properties"]["n_seeds"]["maximum"] == MAX_SEEDS
    RunExperimentsInput(methods=[LOGCONF] * MAX_METHODS_PER_CALL, n_seeds=MAX_SEEDS)
    with pytest.raises(ValidationError) as too_many:
        RunExperimentsInput(methods=[LOGCONF] * (MAX_METHODS_PER_CALL + 1), n_seeds=MAX_SEEDS + 1)
    described = describe_validation_error(too_many.value)
    assert described.startswith("methods: List should have at most 5 items")
    assert "; n_seeds: Input should be less than or equal to 5" in described
    assert "http" not in described


def scoring_call(method: MethodSpec, dev_pgr: float | None, seeds: list[int], round: int = 1):
    return ScoringCall(
        agent_id=0,
        round=round,
        method_hash=method.method_hash,
        method_json=method.canonical_json(),
        family=method.family,
        seeds=json.dumps(seeds),
        dev_pgr=dev_pgr,
        budget_left=3,
    )


def test_a_score_that_is_not_finite_is_reported_as_undefined():
    calls = [scoring_call(LOGCONF, float("nan"), [0, 1]), scoring_call(BOOTSTRAP, 0.25, [0, 1])]
    payload = experiments_payload([LOGCONF, BOOTSTRAP], calls, [False, False], asked=2)
    assert [(r["method"], r["dev_pgr"], r["n_seeds"]) for r in payload["results"]] == [
        ({"loss": "logconf"}, None, 2),
        ({"loss": "bootstrap", "aux_weight": 0.5}, 0.25, 2),
    ]


def test_a_heavy_method_specs_result_says_what_it_was_charged():
    heavy = MethodSpec(epochs=100)
    charged = scoring_call(heavy, 0.3, [0, 1]).model_copy(update={"charge": 5})
    calls = [charged, scoring_call(LOGCONF, 0.2, [0, 1])]
    results = experiments_payload([heavy, LOGCONF], calls, [False, False], asked=2)["results"]
    assert [r["cost"] for r in results] == [
        "5 dev-scoring calls: its estimated compute is ~5x vanilla's",
        "1 dev-scoring call",
    ]
    again = experiments_payload([heavy], [charged], [True], asked=2)["results"][0]["cost"]
    assert again == "free: already scored for you in round 1"


def test_a_post_carries_the_latest_pipeline_score_and_needs_one():
    scored = [
        ScoredMethod(round=0, method=BOOTSTRAP, dev_pgr=0.4, n_seeds=1),
        ScoredMethod(round=1, method=LOGCONF, dev_pgr=None, n_seeds=3),
        ScoredMethod(round=1, method=BOOTSTRAP, dev_pgr=0.3, n_seeds=5),
    ]
    post = finding_post(2, 1, MethodChoiceInput(method=BOOTSTRAP, rationale="robust"), scored)
    assert (post.round, post.agent_id, post.dev_pgr, post.n_seeds) == (1, 2, 0.3, 5)
    assert post.rationale == "robust"
    for unscorable in (LOGCONF, MethodSpec(loss="product")):
        with pytest.raises(ToolRefused, match="run it with run_experiments first"):
            finding_post(2, 1, MethodChoiceInput(method=unscorable, rationale="r"), scored)
