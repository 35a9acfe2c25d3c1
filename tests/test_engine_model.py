import numpy as np
import torch

from labgap.data.tasks import TrainingRecipe
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


def test_dropout_only_applies_while_training():
    hidden = torch.ones(4, 10)
    dropout = SeededDropout(0.5, torch.Generator().manual_seed(0))
    assert torch.equal(dropout.apply(hidden, training=False), hidden)
    assert not torch.equal(dropout.apply(hidden, training=True), hidden)
