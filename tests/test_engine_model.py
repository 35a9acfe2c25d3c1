import ast
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import labgap.engine.mlp
from labgap.data.tasks import TrainingRecipe
from labgap.engine.mlp import (
    MLP,
    TrainingTimedOut,
    fit,
    recipe_with,
    soft_cross_entropy,
    train_mlp,
)
from labgap.engine.model import SeededDropout, train_student
from labgap.methods.spec import MethodSpec


def test_same_seed_trains_the_same_student_whatever_the_global_rng():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 8)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=64)]
    recipe = TrainingRecipe(hidden=64, epochs=3, batch_size=16, dropout=0.2)
    method = MethodSpec(loss="logconf", aux_weight=0.5)
    first = train_student(features, targets, recipe, method, seed=4).predict_proba(features)
    torch.manual_seed(12345)
    torch.rand(100)
    second = train_student(features, targets, recipe, method, seed=4).predict_proba(features)
    assert np.array_equal(first, second)


def test_training_leaves_torchs_global_rng_alone():
    """Programs may use torch's global RNG themselves: the kit must neither read nor advance it."""
    features, targets = _problem()
    recipe = TrainingRecipe(hidden=64, epochs=2, batch_size=16, dropout=0.3)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    train_mlp(features, targets, recipe, seed=1).predict_proba(features)
    assert torch.equal(state, torch.get_rng_state())


def test_dropout_only_applies_while_training():
    hidden = torch.ones(4, 10)
    dropout = SeededDropout(0.5, torch.Generator().manual_seed(0))
    assert torch.equal(dropout.apply(hidden, training=False), hidden)
    assert not torch.equal(dropout.apply(hidden, training=True), hidden)


def _problem(seed=0, rows=96, classes=3):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 8)).astype(np.float32)
    targets = rng.dirichlet(np.ones(classes), size=rows).astype(np.float32)
    return features, targets


def test_train_mlp_is_the_engines_vanilla_student():
    features, targets = _problem()
    recipe = TrainingRecipe(hidden=64, epochs=3, batch_size=16, dropout=0.2)
    kit = train_mlp(features, targets, recipe, seed=2).predict_proba(features)
    engine = train_student(features, targets, recipe, MethodSpec(), seed=2)
    assert np.array_equal(kit, engine.predict_proba(features))


def test_zero_weight_rows_have_no_effect_on_the_model():
    """A row of weight 0 contributes an exact zero gradient, so what it holds cannot matter:
    replacing its features and targets with junk leaves every trained weight bit-identical."""
    features, targets = _problem()
    weights = np.where(np.arange(len(features)) % 3 == 0, 0.0, 1.0)
    recipe = TrainingRecipe(hidden=64, epochs=3, batch_size=16, dropout=0.2)
    junk_features, junk_targets = features.copy(), targets.copy()
    silent = weights == 0
    junk_rng = np.random.default_rng(9)
    junk_features[silent] = junk_rng.normal(scale=5.0, size=junk_features[silent].shape)
    junk_targets[silent] = np.eye(3, dtype=np.float32)[junk_rng.integers(0, 3, silent.sum())]
    clean = train_mlp(features, targets, recipe, seed=1, weights=weights)
    junk = train_mlp(junk_features, junk_targets, recipe, seed=1, weights=weights)
    probe = np.random.default_rng(3).normal(size=(20, 8)).astype(np.float32)
    assert np.array_equal(clean.predict_proba(probe), junk.predict_proba(probe))
    unweighted = train_mlp(junk_features, junk_targets, recipe, seed=1)
    assert not np.array_equal(clean.predict_proba(probe), unweighted.predict_proba(probe))


def test_equal_weights_are_no_weights():
    features, targets = _problem()
    recipe = TrainingRecipe(hidden=0, epochs=2, batch_size=32)
    plain = train_mlp(features, targets, recipe, seed=5).predict_proba(features)
    for value in (1.0, 2.5):
        weighted = train_mlp(features, targets, recipe, 5, weights=np.full(len(features), value))
        assert np.array_equal(plain, weighted.predict_proba(features))


def test_bad_weights_are_refused():
    features, targets = _problem()
    recipe = TrainingRecipe(epochs=1)
    for weights in (np.zeros(len(features)), -np.ones(len(features)), np.ones(3)):
        with pytest.raises(ValueError):
            train_mlp(features, targets, recipe, 0, weights=weights)


def test_fit_calls_the_loss_with_batch_targets_and_progress():
    features, targets = _problem(rows=50)
    recipe = TrainingRecipe(hidden=0, epochs=2, batch_size=20)
    seen = []

    def loss(log_probs, target_rows, progress):
        seen.append((len(log_probs), target_rows.shape, progress))
        return soft_cross_entropy(log_probs, target_rows)

    model = fit(None, features, targets, recipe, 0, loss)
    assert [size for size, _, _ in seen] == [20, 20, 10] * 2
    assert all(shape == (size, 3) for size, shape, _ in seen)
    assert [progress for _, _, progress in seen] == [step / 6 for step in range(6)]
    assert not model.training


def test_fit_continues_training_a_given_model():
    features, targets = _problem()
    recipe = TrainingRecipe(hidden=64, epochs=1, batch_size=16)
    model = MLP(8, 3, recipe, seed=0)
    before = model.predict_proba(features)
    assert fit(model, features, targets, recipe, 0) is model
    after_fit = model.predict_proba(features)
    assert not np.array_equal(before, after_fit)
    assert train_mlp(features, targets, recipe, 0, np.ones(len(features)), model=model) is model
    assert not np.array_equal(after_fit, model.predict_proba(features))


def test_a_deadline_stops_fit_between_minibatches_and_otherwise_changes_nothing():
    features, targets = _problem()
    recipe = TrainingRecipe(hidden=64, epochs=3, batch_size=16, dropout=0.2)
    free = fit(None, features, targets, recipe, 4).predict_proba(features)
    bounded = fit(None, features, targets, recipe, 4, deadline=time.monotonic() + 3600)
    assert np.array_equal(free, bounded.predict_proba(features))
    with pytest.raises(TrainingTimedOut, match="step 0 of 18"):
        fit(None, features, targets, recipe, 4, deadline=time.monotonic() - 1)


def test_recipe_with_changes_only_the_named_fields():
    changed = recipe_with(TrainingRecipe(), epochs=3)
    assert (changed.epochs, changed.hidden, changed.batch_size) == (3, 256, 64)
    with pytest.raises(ValueError):
        recipe_with(TrainingRecipe(), epoch=3)


def test_the_kit_is_standalone():
    """The sandbox copies mlp.py in as `w2s_kit`, where labgap cannot be imported."""
    tree = ast.parse(Path(labgap.engine.mlp.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"numpy", "torch", "time", "types"}


def test_importing_the_model_module_does_not_import_torch():
    code = "import sys, labgap.engine.model; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
