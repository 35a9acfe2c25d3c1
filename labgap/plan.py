"""Stage 1, task generation: from a validated StudyConfig to a fully specified study plan."""

from pydantic import BaseModel, ConfigDict

from labgap.config import StudyConfig
from labgap.data.datasets import load_dataset
from labgap.data.tasks import TaskSpec, split_indices
from labgap.programs.isolation import Isolation, detect_isolation
from labgap.search.directions import ResearchDirection, assign_directions
from labgap.version import code_version


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
    sandbox: Isolation
    """How this machine isolates method programs (said in the log and the report)."""


def planned_task(spec: TaskSpec, role: str) -> PlannedTask:
    """Load and verify the task's data and check its splits fit, before any compute is spent."""
    dataset = load_dataset(spec.dataset)
    if spec.subset:
        dataset = dataset.subset(spec.subset, seed=0)
    split_indices(spec, len(dataset), seed=0)
    return PlannedTask(
        spec=spec,
        role=role,
        dataset_sha256=dataset.sha256,
        n_rows=len(dataset),
        n_classes=dataset.n_classes,
    )


def build_plan(config: StudyConfig) -> StudyPlan:
    """Resolve every task (loading and verifying its data) and give each agent a direction (no
    agents when the user names the method to replicate)."""
    config = config.with_resolved_seed()
    roles = config.target_roles()
    directions = [] if config.candidate_method else assign_directions(config.n_agents)
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
        sandbox=detect_isolation(),
    )
