"""Stage 1: a validated config becomes a fully specified plan."""

from labgap.config import StudyConfig
from labgap.plan import build_plan


def test_every_task_is_resolved_and_every_agent_gets_its_own_direction(tiny_study_tasks):
    lab, heldout, production = tiny_study_tasks
    config = StudyConfig(
        lab_task=lab, heldout_tasks=[heldout], production_targets=[production], n_agents=4, seed=7
    )
    plan = build_plan(config)
    assert plan.study_id == config.resolved_study_id
    assert (plan.lab.role, [t.role for t in plan.targets]) == ("lab", ["heldout", "production"])
    assert plan.lab.n_rows == 569 and plan.targets[0].n_classes == 10
    assert len(plan.lab.dataset_sha256) == 64
    assert len({a.direction.key for a in plan.agents}) == 4
    assert [a.sampler_seed for a in plan.agents] == [7000, 7001, 7002, 7003]
    assert plan.code_version


def test_a_recurring_study_takes_its_seed_from_the_day(tiny_study_tasks):
    lab, heldout, _ = tiny_study_tasks
    config = StudyConfig(lab_task=lab, heldout_tasks=[heldout], production_targets=[], seed=None)
    assert build_plan(config).config.seed is not None
