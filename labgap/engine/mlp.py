"""The strong student: a seeded MLP (or linear probe) and its training loop.

This module is standalone (it imports only numpy and torch) because it doubles as `w2s_kit`, the
helper a method program imports inside the sandbox:

    import w2s_kit

    def fit_predict(data):
        model = w2s_kit.train_mlp(data.train_features, data.teacher_probs, data.recipe, data.seed)
        return model.predict_proba(data.eval_features)

is vanilla weak-to-strong training, numerically the same student the engine trains in-process.

    train_mlp(features, targets, recipe, seed, weights=None, model=None) -> MLP
        soft-target cross-entropy, optional per-row weights, optional warm start
    fit(model, features, targets, recipe, seed, loss=None, deadline=None) -> MLP
        the training loop with your own loss(log_probs, target_rows, progress)
    MLP(n_in, n_classes, recipe, seed): .forward(tensor) -> logits, .predict_proba(array)
    soft_cross_entropy(log_probs, targets, weights=None); recipe_with(recipe, **changes)

What every function here guarantees:

* Seeded: weight initialisation, dropout masks and batch order are drawn from torch generators
  seeded from the `seed` argument, so the same inputs, seed and torch thread count give
  bit-identical numbers, in any process or thread.
* Never touches torch's global RNG: it is neither read nor advanced, so a program may call these
  functions any number of times, in any order, and use the global RNG itself, without one call
  changing another's numbers. Torch's thread settings are left alone too.
* `recipe` is any object with attributes `epochs`, `lr`, `weight_decay`, `hidden` (0 means a
  linear probe), `dropout` and `batch_size`, such as a program's `data.recipe`.

torch is imported inside the functions so that importing this module stays cheap.
"""

import time
from types import SimpleNamespace

import numpy as np

RECIPE_FIELDS = ("epochs", "lr", "weight_decay", "hidden", "dropout", "batch_size")


class TrainingTimedOut(TimeoutError):
    """`fit` stopped between two minibatches because its deadline had passed."""


class SeededDropout:
    """Dropout drawing from the model's own generator, so parallel threads cannot share (and
    race on) torch's global RNG; the same seed gives the same masks in any executor."""

    def __init__(self, rate: float, generator):
        self.rate = rate
        self.generator = generator

    def apply(self, hidden, training: bool):
        import torch

        if not training or self.rate == 0.0:
            return hidden
        keep = torch.rand(hidden.shape, generator=self.generator) >= self.rate
        return hidden * keep / (1.0 - self.rate)


class MLP:
    """A linear probe (recipe.hidden == 0) or a one-hidden-layer GELU MLP with dropout before the
    output layer, initialised and regularised from its own seeded generator (never torch's
    global RNG). `forward` maps a float32 tensor to logits; `predict_proba` maps a numpy array
    to class probabilities (float32, rows sum to 1) and leaves the model in evaluation mode."""

    def __init__(self, n_in: int, n_classes: int, recipe, seed: int):
        import torch

        self.generator = torch.Generator().manual_seed(seed)
        sizes = [n_in, recipe.hidden, n_classes] if recipe.hidden else [n_in, n_classes]
        # skip_init: torch's default initialisation would draw from (and advance) its global RNG
        self.layers = torch.nn.ModuleList(
            torch.nn.utils.skip_init(torch.nn.Linear, fan_in, fan_out)
            for fan_in, fan_out in zip(sizes, sizes[1:], strict=False)
        )
        with torch.no_grad():
            for layer in self.layers:
                bound = 1.0 / layer.in_features**0.5
                layer.weight.uniform_(-bound, bound, generator=self.generator)
                layer.bias.uniform_(-bound, bound, generator=self.generator)
        self.dropout = SeededDropout(recipe.dropout, self.generator)
        self.training = True

    def parameters(self):
        return self.layers.parameters()

    def forward(self, inputs):
        import torch

        hidden = inputs
        for index, layer in enumerate(self.layers):
            if index == len(self.layers) - 1:
                hidden = self.dropout.apply(hidden, self.training)
            hidden = layer(hidden)
            if index < len(self.layers) - 1:
                hidden = torch.nn.functional.gelu(hidden)
        return hidden

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        import torch

        self.training = False
        with torch.inference_mode():
            logits = self.forward(torch.from_numpy(as_float32(features)))
            return torch.softmax(logits, dim=1).numpy()


def as_float32(array) -> np.ndarray:
    """A C-contiguous float32 view of `array` (no copy when it already is one)."""
    return np.ascontiguousarray(array, dtype=np.float32)


def recipe_with(recipe, **changes) -> SimpleNamespace:
    """A copy of `recipe` with some fields changed, e.g. `recipe_with(data.recipe, epochs=5)`."""
    unknown = set(changes) - set(RECIPE_FIELDS)
    if unknown:
        raise ValueError(f"unknown recipe fields {sorted(unknown)}; expected {RECIPE_FIELDS}")
    return SimpleNamespace(**{f: changes.get(f, getattr(recipe, f)) for f in RECIPE_FIELDS})


def soft_cross_entropy(log_probs, targets, weights=None):
    """Mean over rows of -sum_c targets[:, c] * log_probs[:, c], each row times its weight if
    given (a weight of zero removes the row's gradient exactly)."""
    per_row = -(targets * log_probs).sum(dim=1)
    if weights is not None:
        per_row = per_row * weights
    return per_row.mean()


def fit(
    model,
    features: np.ndarray,
    targets: np.ndarray,
    recipe,
    seed: int,
    loss=None,
    deadline: float | None = None,
):
    """Train `model` (or, if None, a fresh `MLP(features.shape[1], targets.shape[1], recipe,
    seed)`) with AdamW for `recipe.epochs` epochs of shuffled minibatches; returns the model in
    evaluation mode.

    `loss(log_probs, target_rows, progress) -> scalar tensor` is called on every minibatch with
    the model's log-probabilities for the batch, the batch's rows of `targets` (a float32 tensor)
    and the fraction of training steps done so far (0 at the first step, < 1 at the last); the
    default is `soft_cross_entropy(log_probs, target_rows)`. `targets` is any 2-D array with one
    row per feature row, so extra columns can carry per-row data for the loss (then pass a
    model, since its number of classes is not targets.shape[1]). The batch order comes from a
    generator seeded with `seed + 1`; dropout uses the model's own generator.

    `deadline` (a `time.monotonic()` value; None: none) is checked before every minibatch, and
    `TrainingTimedOut` is raised once it has passed: the engine's per-trial timeout, cooperative
    so that it works in any executor. Reading the clock draws nothing, so a run that finishes
    gives the same numbers with or without a deadline.
    """
    import torch

    inputs = torch.from_numpy(as_float32(features))
    target_tensor = torch.from_numpy(as_float32(targets))
    n_rows = len(inputs)
    if len(target_tensor) != n_rows:
        raise ValueError(f"{n_rows} feature rows but {len(target_tensor)} target rows")
    if model is None:
        model = MLP(inputs.shape[1], target_tensor.shape[1], recipe, seed)
    if loss is None:

        def loss(log_probs, target_rows, progress):
            return soft_cross_entropy(log_probs, target_rows)

    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    generator = torch.Generator().manual_seed(seed + 1)
    steps_per_epoch = -(-n_rows // recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    step = 0
    model.training = True
    for _ in range(recipe.epochs):
        order = torch.randperm(n_rows, generator=generator)
        for start in range(0, n_rows, recipe.batch_size):
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingTimedOut(f"stopped before step {step} of {total_steps}")
            rows = order[start : start + recipe.batch_size]
            logits = model.forward(inputs[rows])
            log_probs = torch.log_softmax(logits, dim=1)
            value = loss(log_probs, target_tensor[rows], step / total_steps)
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            optimiser.step()
            step += 1
    model.training = False
    return model


def train_mlp(
    features: np.ndarray,
    targets: np.ndarray,
    recipe,
    seed: int,
    weights: np.ndarray | None = None,
    model: MLP | None = None,
) -> MLP:
    """Train a student on soft targets: the building block of a weak-to-strong program.

    features: (n_rows, n_features) array; targets: (n_rows, n_classes) class distributions (soft
    labels such as the teacher's probabilities, or one-hot rows); weights: optional non-negative
    per-row weights, rescaled to mean 1 over all rows so they change how much each row counts
    but not the effective learning rate; a row of weight 0 has no effect at all on the model
    (its features and targets could be anything), though it still takes a place in its batch.
    model: continue training this MLP (e.g. a curriculum's next stage; a fresh optimiser, its
    own dropout generator) instead of a fresh `MLP(n_features, n_classes, recipe, seed)`.
    Minimises the (weighted) soft cross-entropy with `fit`; with weights=None (or all weights
    equal) this is exactly the engine's vanilla student. Seeded and independent of torch's
    global RNG (see the module docstring); call `.predict_proba(x)` on the result.
    """
    targets = as_float32(targets)
    if weights is None:
        return fit(model, features, targets, recipe, seed)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(targets),) or not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise ValueError("weights must be one finite, non-negative number per row")
    if weights.sum() <= 0:
        raise ValueError("weights must not all be zero")
    n_classes = targets.shape[1]
    packed = np.column_stack([targets, weights / weights.mean()])
    if model is None:
        model = MLP(np.shape(features)[1], n_classes, recipe, seed)

    def weighted(log_probs, target_rows, progress):
        return soft_cross_entropy(log_probs, target_rows[:, :n_classes], target_rows[:, n_classes])

    return fit(model, features, packed, recipe, seed, weighted)
