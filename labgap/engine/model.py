"""The strong model and its training: a seeded MLP (or linear probe) trained on soft targets, and
the process-wide torch thread setting. Every random draw comes from a generator seeded by the
caller, never torch's global RNG, so the same seed gives the same numbers in any executor."""

import os
import threading

import numpy as np

from labgap.data.tasks import TrainingRecipe
from labgap.engine.losses import student_loss
from labgap.methods.spec import MethodSpec


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
    """A linear probe (hidden=0) or a one-hidden-layer MLP, initialised and regularised from its
    own seeded generator (never torch's global RNG)."""

    def __init__(self, n_in: int, n_classes: int, recipe: TrainingRecipe, seed: int):
        import torch

        self.generator = torch.Generator().manual_seed(seed)
        sizes = [n_in, recipe.hidden, n_classes] if recipe.hidden else [n_in, n_classes]
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(fan_in, fan_out)
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
            logits = self.forward(torch.from_numpy(features))
            return torch.softmax(logits, dim=1).numpy()


def train_student(
    features: np.ndarray,
    targets: np.ndarray,
    recipe: TrainingRecipe,
    method: MethodSpec,
    seed: int,
) -> MLP:
    """Train on soft targets with the method's loss; aux terms ramp up over the warmup."""
    import torch

    n_rows, n_classes = targets.shape
    model = MLP(features.shape[1], n_classes, recipe, seed)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    inputs = torch.from_numpy(features)
    target_tensor = torch.from_numpy(targets)
    prior = target_tensor.mean(dim=0)
    generator = torch.Generator().manual_seed(seed + 1)
    steps_per_epoch = -(-n_rows // recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    step = 0
    model.training = True
    for _ in range(recipe.epochs):
        order = torch.randperm(n_rows, generator=generator)
        for start in range(0, n_rows, recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            logits = model.forward(inputs[rows])
            log_probs = torch.log_softmax(logits, dim=1)
            target = target_tensor[rows]
            progress = step / total_steps
            aux = method.aux_weight
            if method.warmup > 0:
                aux *= min(1.0, progress / method.warmup)
            loss = student_loss(method.loss, log_probs, target, aux, prior)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
    return model


class TorchThreads:
    """Process-wide torch thread count, set so parallel workers do not oversubscribe the cores."""

    _lock = threading.Lock()
    _configured: int | None = None

    @classmethod
    def configure(cls, workers: int = 1) -> int:
        import torch

        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        with cls._lock:
            if cls._configured != threads:
                torch.set_num_threads(threads)
                cls._configured = threads
        return threads
