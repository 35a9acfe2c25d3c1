from datetime import date

import pytest
from pydantic import ValidationError

from labgap.config import StudyConfig, load_study_config
from labgap.data.tasks import BUILTIN_TASKS
from labgap.errors import LabgapInputError
from labgap.profiles import PROFILES


def test_recurring_study_gets_fresh_seeds_each_day():
    recurring = StudyConfig(profile="quick", seed=None)
    monday = recurring.with_resolved_seed(date(2026, 11, 23))
    tuesday = recurring.with_resolved_seed(date(2026, 11, 24))
    assert tuesday.seed == monday.seed + 1
    assert monday.resolved_study_id != tuesday.resolved_study_id
    assert StudyConfig(seed=4).with_resolved_seed(date(2026, 11, 23)).seed == 4


def test_study_id_is_stable_for_the_same_config_and_ignores_execution_settings():
    a = StudyConfig(seed=3)
    assert (
        a.resolved_study_id == StudyConfig(seed=3, workers=1, executor="thread").resolved_study_id
    )
    assert a.resolved_study_id != StudyConfig(seed=4).resolved_study_id
    assert StudyConfig(study_id="mine").resolved_study_id == "mine"


def test_every_profile_is_a_valid_config():
    for profile in PROFILES:
        config = StudyConfig(profile=profile)
        assert config.targets() and config.lab().name == "rt-lab"


def test_config_file_overrides_and_cli_values(tmp_path):
    path = tmp_path / "study.json"
    path.write_text('{"profile": "quick", "rounds": 4, "name": "from-file"}')
    config = load_study_config(path, seed=9)
    assert (config.name, config.rounds, config.n_agents, config.seed) == ("from-file", 4, 3, 9)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"heldout_tasks": [], "production_targets": []}, "at least one held-out task"),
        ({"heldout_tasks": ["rt-lab"]}, "distinct"),
        ({"agent_backend": "gpt"}, "agent_backend"),
        ({"max_seeds": 3, "confirmation_seeds": 6}, "max_seeds: 3 is below"),
        ({"design": "adaptive"}, "design"),
        (
            {
                "production_targets": [
                    BUILTIN_TASKS["rt-noisy-teacher"].model_copy(update={"name": "production"})
                ]
            },
            "reserved",
        ),
    ],
)
def test_invalid_study_configs(body, message):
    with pytest.raises(LabgapInputError, match=message):
        load_study_config(None, **body)


def test_empty_sizes_come_from_the_profile_and_explicit_ones_win():
    quick = StudyConfig(profile="quick", n_agents=None, rounds=None, heldout_tasks=None)
    assert (quick.n_agents, quick.rounds, quick.heldout_tasks) == (
        3,
        2,
        ["bbc-heldout", "digits-heldout"],
    )
    assert quick.config_hash == StudyConfig(profile="quick").config_hash
    assert StudyConfig(profile="quick", rounds=7).rounds == 7
    assert StudyConfig(claude=None).claude.model == StudyConfig().claude.model


def test_a_task_file_is_read_into_its_spec(tmp_path, tiny_binary_task):
    path = tmp_path / "mine.json"
    path.write_text(tiny_binary_task.model_dump_json())
    config = StudyConfig(lab_task=str(path), heldout_tasks=["bbc-heldout"], production_targets=[])
    assert config.lab() == tiny_binary_task
    with pytest.raises(ValidationError, match="missing.yaml"):
        StudyConfig(lab_task=str(tmp_path / "missing.yaml"))


def test_a_profile_that_is_not_a_name_is_a_clear_error():
    with pytest.raises(ValidationError, match="Input should be 'quick', 'default' or 'full'"):
        StudyConfig(profile=["quick"])


def test_the_study_id_changes_with_what_changes_the_numbers_only():
    claude = StudyConfig(agent_backend="claude")
    moved = StudyConfig(
        agent_backend="claude",
        claude={"base_url": "http://127.0.0.1:9", "max_attempts": 2, "max_concurrent_requests": 1},
    )
    assert moved.config_hash == claude.config_hash
    other_model = StudyConfig(agent_backend="claude", claude={"max_tokens": 1000})
    assert other_model.config_hash != claude.config_hash
    assert StudyConfig(claude={"max_tokens": 1000}).config_hash == StudyConfig().config_hash
    assert StudyConfig(workers=1, executor="thread").config_hash == StudyConfig().config_hash


def test_the_sequential_design_plans_looks_and_a_fixed_study_keeps_its_id():
    config = StudyConfig(profile="default")
    assert config.design == "sequential" and config.schedule.sizes == [6, 10, 14, 18]
    assert config.fresh_seeds(10)[:6] == config.fresh_seeds()
    fixed = StudyConfig(profile="default", design="fixed")
    assert fixed.schedule.sizes == [6]
    changed = StudyConfig(profile="default", design="fixed", max_seeds=30, seeds_per_look=2)
    assert fixed.config_hash == changed.config_hash
    assert config.config_hash != fixed.config_hash
