import pytest

from labgap.config import StudyConfig
from labgap.engine.w2s import (
    TRIAL_TIMEOUT_SECONDS,
    TrialFailure,
    TrialLimits,
    W2SEngine,
    effective_recipe,
    pgr,
)
from labgap.methods.spec import PRESETS, MethodSpec


def test_pgr_arithmetic():
    assert pgr(0.6, 0.8, 0.7) == pytest.approx(0.5)
    assert pgr(0.6, 0.8, 0.8) == pytest.approx(1.0)
    assert pgr(0.6, 0.8, 0.5) == pytest.approx(-0.5)


@pytest.mark.parametrize("ceiling", [0.6, 0.55])
def test_pgr_undefined_when_ceiling_does_not_beat_weak(ceiling):
    assert pgr(0.6, ceiling, 0.7) is None


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("task_fixture", ["tiny_binary_task", "tiny_multiclass_task"])
def test_every_preset_runs_and_scores(preset, task_fixture, request):
    task = request.getfixturevalue(task_fixture)
    result = W2SEngine(disk_cache=False).run(task, PRESETS[preset], seed=0)
    assert result.ceiling_acc_dev > result.weak_acc_dev
    assert 0.0 <= result.student_acc_test <= 1.0
    assert result.pgr_dev == pytest.approx(
        pgr(result.weak_acc_dev, result.ceiling_acc_dev, result.student_acc_dev)
    )
    assert result.method_hash == PRESETS[preset].method_hash


def test_same_task_method_seed_gives_same_numbers(tiny_multiclass_task):
    method = MethodSpec(loss="logconf", aux_weight=0.5, knn_k=5, knn_mix=0.3)
    first = W2SEngine(disk_cache=False).run(tiny_multiclass_task, method, seed=3)
    second = W2SEngine(disk_cache=False).run(tiny_multiclass_task, method, seed=3)
    fields = {"wall_seconds"}
    assert first.model_dump(exclude=fields) == second.model_dump(exclude=fields)


def test_different_seeds_give_different_splits(tiny_binary_task):
    engine = W2SEngine(disk_cache=False)
    a = engine.run(tiny_binary_task, PRESETS["vanilla"], seed=0)
    b = engine.run(tiny_binary_task, PRESETS["vanilla"], seed=1)
    assert (a.weak_acc_dev, a.student_acc_dev) != (b.weak_acc_dev, b.student_acc_dev)


def test_further_methods_retrain_neither_teacher_nor_ceiling(tiny_binary_task):
    engine = W2SEngine(disk_cache=False)
    first = engine.run(tiny_binary_task, PRESETS["vanilla"], seed=0)
    assert engine.training_counts == {"weak": 1, "ceiling": 1, "student": 1}
    second = engine.run(tiny_binary_task, PRESETS["logconf"], seed=0)
    assert engine.training_counts == {"weak": 1, "ceiling": 1, "student": 2}
    assert not first.teacher_cached and second.teacher_cached
    assert second.ceiling_acc_test == first.ceiling_acc_test


def test_disk_cache_serves_a_new_engine(tiny_binary_task, tmp_path, monkeypatch):
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path))
    cold = W2SEngine().run(tiny_binary_task, PRESETS["vanilla"], seed=5)
    fresh_engine = W2SEngine()
    warm = fresh_engine.run(tiny_binary_task, PRESETS["vanilla"], seed=5)
    assert fresh_engine.training_counts == {"student": 1}
    assert warm.teacher_cached
    assert warm.model_dump(exclude={"wall_seconds", "teacher_cached"}) == cold.model_dump(
        exclude={"wall_seconds", "teacher_cached"}
    )


def test_self_training_costs_one_student_per_round(tiny_binary_task):
    engine = W2SEngine(disk_cache=False)
    engine.run(tiny_binary_task, MethodSpec(self_training_rounds=2), seed=0)
    assert engine.training_counts["student"] == 3


def test_fixed_recipe_ignores_method_training_settings(tiny_binary_task):
    method = MethodSpec(epochs=3, hidden=1024)
    assert effective_recipe(tiny_binary_task.recipe, method).epochs == 3
    fixed = tiny_binary_task.recipe.model_copy(update={"fixed": True})
    assert effective_recipe(fixed, method) == fixed


def test_a_method_training_past_the_trial_timeout_fails_with_the_timeout(tiny_binary_task):
    engine = W2SEngine(disk_cache=False)
    engine.teacher_and_ceiling(tiny_binary_task, 0)  # the task's, not bounded by the timeout
    method = MethodSpec(self_training_rounds=2)
    outcome = engine.run(tiny_binary_task, method, 0, TrialLimits(timeout_seconds=0.001))
    assert isinstance(outcome, TrialFailure)
    assert (outcome.method_hash, outcome.seed) == (method.method_hash, 0)
    assert outcome.error.startswith(
        "timed out: training took longer than the 0.001 s trial timeout (trial_timeout_seconds)"
    )
    assert "student 1 of 3" in outcome.error and engine.training_counts["student"] == 0
    assert 0.001 <= outcome.wall_seconds < 10


def test_a_timeout_that_is_not_reached_changes_no_number(tiny_multiclass_task):
    method = MethodSpec(loss="logconf", aux_weight=0.5, self_training_rounds=1)
    engine = W2SEngine(disk_cache=False)
    bounded = engine.run(tiny_multiclass_task, method, 3, TrialLimits(timeout_seconds=3600))
    free = engine.run(tiny_multiclass_task, method, 3, TrialLimits(timeout_seconds=None))
    fields = {"wall_seconds", "teacher_cached"}
    assert bounded.model_dump(exclude=fields) == free.model_dump(exclude=fields)


def test_the_engines_default_timeout_is_the_studys():
    study_default = StudyConfig.model_fields["trial_timeout_seconds"].default
    assert TrialLimits().timeout_seconds == TRIAL_TIMEOUT_SECONDS == study_default


def test_method_ranges_are_validated():
    with pytest.raises(ValueError, match="knn_k"):
        MethodSpec(knn_k=3)
    with pytest.raises(ValueError, match="label_smoothing"):
        MethodSpec(label_smoothing=0.5)
    with pytest.raises(ValueError, match="hidden"):
        MethodSpec(hidden=128)
