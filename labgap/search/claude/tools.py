"""A Claude agent's tools: their definitions as the model sees them, the models that validate
their inputs, and the JSON payloads the pipeline answers with.

The agent (agent.py) runs them; everything here is pure. The payloads are also what a stored
conversation is replayed from (transcript.py), so their shape is part of the stored format.
"""

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labgap.methods.spec import PRESETS, MethodSpec
from labgap.search.agent import ForumPost, ScoredMethod, describe_method

MAX_METHODS_PER_CALL = 5
MAX_SEEDS = 5
MAX_RATIONALE_CHARS = 2000


class RunExperimentsInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: list[MethodSpec] = Field(min_length=1, max_length=MAX_METHODS_PER_CALL)
    n_seeds: int = Field(ge=1, le=MAX_SEEDS)


class MethodChoiceInput(BaseModel):
    """The input of `post_finding` and `submit_method`."""

    model_config = ConfigDict(extra="forbid")
    method: MethodSpec
    rationale: str = Field(min_length=1, max_length=MAX_RATIONALE_CHARS)


def tool_definitions() -> list[dict[str, Any]]:
    """The tools' JSON schemas; MethodSpec's schema is inlined so the model sees every range."""
    method = MethodSpec.model_json_schema()
    choice = {
        "type": "object",
        "properties": {
            "method": method,
            "rationale": {"type": "string", "minLength": 1, "maxLength": MAX_RATIONALE_CHARS},
        },
        "required": ["method", "rationale"],
        "additionalProperties": False,
    }
    no_input = {"type": "object", "properties": {}, "additionalProperties": False}
    return [
        {
            "name": "describe_method_space",
            "description": (
                "The method space: the JSON schema of a method (every field, its range and "
                "meaning) and the named presets. Free."
            ),
            "input_schema": no_input,
        },
        {
            "name": "run_experiments",
            "description": (
                "Have the pipeline train and score methods: each method runs on n_seeds seeds of "
                "the lab task and you get back its mean dev-split PGR (null when undefined). Each "
                f"method costs one dev-scoring call from your budget; at most "
                f"{MAX_METHODS_PER_CALL} methods per call. Omitted fields take their defaults; "
                "training settings left null follow the task's recipe. knn_k is 0 (off) or 5-50."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "methods": {
                        "type": "array",
                        "items": method,
                        "minItems": 1,
                        "maxItems": MAX_METHODS_PER_CALL,
                    },
                    "n_seeds": {"type": "integer", "minimum": 1, "maximum": MAX_SEEDS},
                },
                "required": ["methods", "n_seeds"],
                "additionalProperties": False,
            },
        },
        {
            "name": "read_forum",
            "description": "Every finding posted by any agent so far, best dev PGR first.",
            "input_schema": no_input,
        },
        {
            "name": "post_finding",
            "description": (
                "Share a finding with the other agents: a method the pipeline has already scored "
                "for you, and what you learned. Its dev PGR is the pipeline's. One post per "
                "round; posting again replaces this round's post."
            ),
            "input_schema": choice,
        },
        {
            "name": "submit_method",
            "description": (
                "Submit your final method for this round, with your rationale. This ends your "
                "round."
            ),
            "input_schema": choice,
        },
    ]


TOOLS = tool_definitions()
TOOL_NAMES = [tool["name"] for tool in TOOLS]


class ToolRefused(Exception):
    """A well-formed tool call the pipeline will not carry out; the model is told why."""


def tool_result(tool_use_id: str, payload: dict[str, Any], is_error: bool = True) -> dict[str, Any]:
    """A tool_result block carrying `payload` as JSON (an error unless told otherwise)."""
    return {
        "type": "tool_result",
        "tool_use_id": tool_use_id,
        "content": json.dumps(payload),
        "is_error": is_error,
    }


def describe_validation_error(error: ValidationError) -> str:
    """Pydantic's errors, one line each, without its documentation links."""
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'input'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )


def method_space() -> dict[str, Any]:
    """The `describe_method_space` payload."""
    return {
        "method_schema": MethodSpec.model_json_schema(),
        "presets": {
            name: preset.model_dump(mode="json", exclude_defaults=True)
            for name, preset in PRESETS.items()
        },
        "notes": "knn_k is 0 (off) or 5-50; null training settings follow the task's recipe",
    }


def forum_payload(forum: list[ForumPost]) -> dict[str, Any]:
    """The `read_forum` payload: every post, best dev PGR first (undefined ones last)."""
    best_first = sorted(
        forum, key=lambda post: (post.dev_pgr is None, -(post.dev_pgr or 0.0), post.round)
    )
    return {"posts": [post_payload(post) for post in best_first]}


def experiments_payload(
    methods: list[MethodSpec], scores: list[float | None], n_seeds: int
) -> dict[str, Any]:
    """The `run_experiments` payload: each method with the pipeline's mean dev PGR (a score that
    is not finite is reported as undefined)."""
    return {
        "results": [
            {
                "method": method_json(method),
                "summary": describe_method(method),
                "dev_pgr": score if score is not None and math.isfinite(score) else None,
                "n_seeds": n_seeds,
            }
            for method, score in zip(methods, scores, strict=True)
        ]
    }


def finding_post(
    agent_id: int, round: int, choice: MethodChoiceInput, scored: list[ScoredMethod]
) -> ForumPost:
    """What `post_finding` posts: the chosen method with its latest pipeline score. Refused for a
    method the pipeline has not scored for the agent, or whose dev PGR is undefined."""
    latest = {item.method.method_hash: item for item in latest_scores(scored)}
    found = latest.get(choice.method.method_hash)
    if found is None or found.dev_pgr is None:
        raise ToolRefused(
            "only a method the pipeline has scored for you (with a defined dev PGR) can be "
            "posted: run it with run_experiments first"
        )
    return ForumPost(
        round=round,
        agent_id=agent_id,
        method=choice.method,
        dev_pgr=found.dev_pgr,
        n_seeds=found.n_seeds,
        rationale=choice.rationale,
    )


def post_payload(post: ForumPost) -> dict[str, Any]:
    return {
        **post.model_dump(mode="json"),
        "method": method_json(post.method),
        "summary": describe_method(post.method),
    }


def method_json(method: MethodSpec) -> dict[str, Any]:
    """A method as the model reads it: only the fields not at their defaults."""
    return method.model_dump(mode="json", exclude_defaults=True)


def submission_payload(choice: MethodChoiceInput, scored: list[ScoredMethod]) -> dict[str, Any]:
    """The `submit_method` payload."""
    was_scored = any(item.method == choice.method for item in scored)
    return {
        "submitted": method_json(choice.method),
        "summary": describe_method(choice.method),
        "rationale": choice.rationale,
        "scored_before": was_scored,
        "message": "Submission recorded. Your round is over.",
    }


def latest_scores(scored: list[ScoredMethod]) -> list[ScoredMethod]:
    """One entry per method: its latest score (a re-run on more seeds supersedes an earlier one)."""
    return list({item.method.method_hash: item for item in scored}.values())
