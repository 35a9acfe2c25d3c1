"""Task generation: from a validated StudyConfig to a fully specified study plan and its rows."""

import json

import polars as pl
from pydantic import BaseModel, ConfigDict

from labgap.datasets import load_dataset
from labgap.directions import ResearchDirection, assign_directions
from labgap.study import StudyConfig
from labgap.taskspec import TaskSpec
from labgap.w2s import code_version


class PlannedTask(BaseModel):
    model_config = ConfigDict(frozen=True)
    spec: TaskSpec
    role: str
    dataset_sha256: str
    n_rows: int
    n_classes: int


class PlannedAgent(BaseModel):
    model_config = ConfigDict(frozen=True)
    agent_id: int
    direction: ResearchDirection
    sampler_seed: int


class StudyPlan(BaseModel):
    model_config = ConfigDict(frozen=True)
    study_id: str
    config: StudyConfig
    lab: PlannedTask
    targets: list[PlannedTask]
    agents: list[PlannedAgent]
    code_version: str


def planned_task(spec: TaskSpec, role: str) -> PlannedTask:
    dataset = load_dataset(spec.dataset)
    if spec.subset:
        dataset = dataset.subset(spec.subset, seed=0)
    return PlannedTask(
        spec=spec,
        role=role,
        dataset_sha256=dataset.sha256,
        n_rows=len(dataset),
        n_classes=dataset.n_classes,
    )


def build_plan(config: StudyConfig) -> StudyPlan:
    """Resolve every task (loading and verifying its data) and give each agent a direction."""
    config = config.with_resolved_seed()
    roles = config.target_roles()
    directions = assign_directions(config.n_agents)
    return StudyPlan(
        study_id=config.resolved_study_id,
        config=config,
        lab=planned_task(config.lab(), "lab"),
        targets=[planned_task(spec, roles[spec.name]) for spec in config.targets()],
        agents=[
            PlannedAgent(
                agent_id=agent_id,
                direction=direction,
                sampler_seed=config.seed * 1000 + agent_id,
            )
            for agent_id, direction in enumerate(directions)
        ],
        code_version=code_version(),
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
