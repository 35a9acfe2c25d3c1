"""The strong model and its training as the engine uses it: the seeded MLP from
`labgap.engine.mlp` trained with a method's loss, and the process-wide torch thread setting. Every
random draw comes from a generator seeded by the caller, never torch's global RNG, so the same seed
gives the same numbers in any executor."""

import os
import threading

import numpy as np

from labgap.data.tasks import TrainingRecipe
from labgap.engine.losses import student_loss
from labgap.engine.mlp import MLP, SeededDropout, as_float32, fit
from labgap.methods.spec import MethodSpec

__all__ = ["MLP", "SeededDropout", "TorchThreads", "train_student"]


def train_student(
    features: np.ndarray,
    targets: np.ndarray,
    recipe: TrainingRecipe,
    method: MethodSpec,
    seed: int,
    deadline: float | None = None,
) -> MLP:
    """Train on soft targets with the method's loss; aux terms ramp up over the warmup. Past
    `deadline` (a `time.monotonic()` value) training stops with `TrainingTimedOut`."""
    import torch

    prior = torch.from_numpy(as_float32(targets)).mean(dim=0)

    def loss(log_probs, target, progress: float):
        aux = method.aux_weight
        if method.warmup > 0:
            aux *= min(1.0, progress / method.warmup)
        return student_loss(method.loss, log_probs, target, aux, prior)

    return fit(None, features, targets, recipe, seed, loss, deadline)


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
