"""Row builders: the stages' typed results as frames shaped like the tables they go to.

The quality gates validate exactly these frames, and the recorder writes exactly what passed.
"""

import json
from collections.abc import Iterable

import polars as pl
from pydantic import BaseModel

from labgap.plan import StudyPlan
from labgap.programs.method import declared_params, source_of
from labgap.stages import PairedSeed
from labgap.stats.schemas import GapAnalysis


def to_frame(rows: Iterable[BaseModel], **constant_columns) -> pl.DataFrame:
    """One row per model, plus columns that are the same on every row (e.g. the study id)."""
    frame = pl.DataFrame([row.model_dump() for row in rows])
    if constant_columns and frame.height:
        frame = frame.with_columns(pl.lit(v).alias(k) for k, v in constant_columns.items())
    return frame


def program_rows(method_jsons: Iterable[str]) -> pl.DataFrame:
    """`method_programs`: the source of every program among the recorded methods, once each."""
    programs = {}
    for method_json in method_jsons:
        method = json.loads(method_json)
        if method.get("kind") == "program":
            programs[method["program_id"]] = method["name"]
    rows = []
    for identity, name in sorted(programs.items()):
        source = source_of(identity)
        space = declared_params(source, name)
        params = {key: spec.model_dump(exclude_none=True) for key, spec in space.items()}
        rows.append(
            {
                "program_id": identity,
                "name": name,
                "source": source,
                "params_json": json.dumps(params, sort_keys=True),
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "program_id": pl.String,
            "name": pl.String,
            "source": pl.String,
            "params_json": pl.String,
        },
    )


def study_row(plan: StudyPlan) -> pl.DataFrame:
    config = plan.config
    shas = {task.spec.name: task.dataset_sha256 for task in [plan.lab, *plan.targets]}
    return pl.DataFrame(
        [
            {
                "study_id": plan.study_id,
                "name": config.name,
                "profile": config.profile,
                "seed": config.seed,
                "agent_backend": config.agent_backend,
                "config_json": config.model_dump_json(),
                "config_hash": config.config_hash,
                "code_version": plan.code_version,
                "dataset_sha256s": json.dumps(shas, sort_keys=True),
                "status": "running",
                "sandbox": f"{plan.sandbox.level}: {plan.sandbox.detail}",
            }
        ]
    )


def task_rows(plan: StudyPlan) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "study_id": plan.study_id,
                "task": task.spec.name,
                "role": task.role,
                "task_hash": task.spec.task_hash,
                "spec_json": task.spec.model_dump_json(),
                "dataset": task.spec.dataset.name
                if task.spec.dataset.source == "builtin"
                else str(task.spec.dataset.path),
                "dataset_sha256": task.dataset_sha256,
                "n_rows": task.n_rows,
                "n_classes": task.n_classes,
            }
            for task in [plan.lab, *plan.targets]
        ]
    )


def agent_rows(plan: StudyPlan) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "study_id": plan.study_id,
                "agent_id": agent.agent_id,
                "direction": agent.direction.key,
                "direction_json": agent.direction.model_dump_json(),
                "backend": plan.config.agent_backend,
                "sampler_seed": agent.sampler_seed,
                "scoring_budget": plan.config.budget,
            }
            for agent in plan.agents
        ]
    )


def forum_post_rows(study_id: str, posts: list) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "study_id": study_id,
                "round": post.round,
                "agent_id": post.agent_id,
                "method_hash": post.method.method_hash,
                "method_json": post.method.canonical_json(),
                "dev_pgr": post.dev_pgr,
                "n_seeds": post.n_seeds,
                "rationale": post.rationale,
            }
            for post in posts
        ],
        schema_overrides={"dev_pgr": pl.Float64},
    )


def transfer_rows(study_id: str, pairs: list[PairedSeed]) -> pl.DataFrame:
    """`transfer_trials`: one row per target and seed that both arms ran."""
    return pl.DataFrame(
        [{"study_id": study_id, **pair.model_dump()} for pair in pairs],
        schema_overrides={"baseline_pgr": pl.Float64, "winner_pgr": pl.Float64},
    )


def gap_rows(study_id: str, analysis: GapAnalysis, roles: dict[str, str]) -> pl.DataFrame:
    """`gap_results`: one row for the lab, one per target, one overall."""
    lab = analysis.lab
    rows = [
        {
            "study_id": study_id,
            "target": lab.name,
            "kind": "lab",
            "n": lab.n,
            "delta": lab.delta,
            "ci95_low": lab.ci_low,
            "ci95_high": lab.ci_high,
            "ci_adj_low": lab.ci_adj_low,
            "ci_adj_high": lab.ci_adj_high,
            "p_value": lab.p_value,
            "naive_estimate": lab.naive_estimate,
            "verdict": None,
            "seeds_needed": lab.seeds_needed,
            "look": lab.look,
            "stop_reason": lab.stop_reason,
            "flags": json.dumps(lab.flags),
            "reasons": json.dumps(lab.reasons),
            "detail_json": lab.model_dump_json(),
        }
    ]
    for target in analysis.targets:
        rows.append(
            {
                "study_id": study_id,
                "target": target.name,
                "kind": "target",
                "n": target.n,
                "delta": target.delta,
                "ci95_low": target.ci95_low,
                "ci95_high": target.ci95_high,
                "ci_adj_low": target.ci_adj_low,
                "ci_adj_high": target.ci_adj_high,
                "p_value": target.p_value,
                "p_holm": target.p_holm,
                "rho": target.rho,
                "rho_ci_low": target.rho_ci_low,
                "rho_ci_high": target.rho_ci_high,
                "rho_ci_kind": target.rho_ci_kind,
                "rho_ci_set": target.rho_ci_set,
                "margin_upper": target.margin_upper,
                "verdict": target.verdict,
                "seeds_needed": target.seeds_needed,
                "look": target.look,
                "stop_reason": target.stop_reason,
                "flags": json.dumps(target.flags),
                "reasons": json.dumps(target.reasons),
                "detail_json": json.dumps({"role": roles.get(target.name), **target.model_dump()}),
            }
        )
    versus = analysis.versus_known
    if versus is not None:
        rows.append(
            {
                "study_id": study_id,
                "target": "known-methods",
                "kind": "versus_known",
                "n": versus.n,
                "delta": versus.delta,
                "ci95_low": versus.ci_low,
                "ci95_high": versus.ci_high,
                "p_value": versus.p_value,
                "verdict": versus.verdict,
                "flags": "[]",
                "reasons": json.dumps([versus.reason]),
                "detail_json": versus.model_dump_json(),
            }
        )
    for headline in analysis.headlines:
        rows.append(
            {
                "study_id": study_id,
                "target": headline.question,
                "kind": "headline",
                "verdict": headline.verdict,
                "flags": json.dumps(headline.flags),
                "reasons": json.dumps(headline.reasons),
                "detail_json": headline.model_dump_json(),
            }
        )
    rows.append(
        {
            "study_id": study_id,
            "target": "overall",
            "kind": "overall",
            "verdict": analysis.overall_verdict,
            "flags": json.dumps(analysis.overall_flags),
            "reasons": json.dumps(analysis.overall_reasons),
            "detail_json": json.dumps(
                {
                    "alpha": analysis.alpha,
                    "rho_min": analysis.rho_min,
                    "design": analysis.design,
                    "schedule": analysis.schedule.model_dump() if analysis.schedule else None,
                }
            ),
        }
    )
    return pl.DataFrame(rows, schema=GAP_SCHEMA)


GAP_SCHEMA = {
    "study_id": pl.String,
    "target": pl.String,
    "kind": pl.String,
    "n": pl.Int64,
    "delta": pl.Float64,
    "ci95_low": pl.Float64,
    "ci95_high": pl.Float64,
    "ci_adj_low": pl.Float64,
    "ci_adj_high": pl.Float64,
    "p_value": pl.Float64,
    "p_holm": pl.Float64,
    "rho": pl.Float64,
    "rho_ci_low": pl.Float64,
    "rho_ci_high": pl.Float64,
    "rho_ci_kind": pl.String,
    "margin_upper": pl.Float64,
    "naive_estimate": pl.Float64,
    "verdict": pl.String,
    "seeds_needed": pl.Int64,
    "flags": pl.String,
    "reasons": pl.String,
    "detail_json": pl.String,
    "look": pl.Int64,
    "stop_reason": pl.String,
    "rho_ci_set": pl.String,
}
