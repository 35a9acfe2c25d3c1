"""The weak-to-strong experiment engine: weak teacher, strong student, ceiling, PGR.

Ground truth stays inside this module: callers get accuracies and PGR, never labels. The teacher's
labels and the ceiling do not depend on the method, so they are computed once per (task, seed) and
cached in memory and on disk; each further method costs one student training.
"""

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from labgap import __version__
from labgap.datasets import Dataset, load_dataset
from labgap.features import build_view
from labgap.methods import MethodSpec
from labgap.paths import cache_dir
from labgap.taskspec import TaskSpec, TrainingRecipe, split_indices

ENGINE_VERSION = "2"
RECIPE_FIELDS = ("epochs", "lr", "weight_decay", "hidden", "dropout", "batch_size")


def pgr(weak_acc: float, ceiling_acc: float, student_acc: float) -> float | None:
    """Performance gap recovered; None when undefined (the ceiling does not beat the teacher)."""
    gap = ceiling_acc - weak_acc
    if gap <= 0:
        return None
    return (student_acc - weak_acc) / gap


class TrialResult(BaseModel):
    """One task × method × seed experiment, as the pipeline measured it."""

    model_config = ConfigDict(frozen=True)

    task: str
    task_hash: str
    method_hash: str
    method_json: str
    seed: int
    weak_acc_dev: float
    weak_acc_test: float
    ceiling_acc_dev: float
    ceiling_acc_test: float
    student_acc_dev: float
    student_acc_test: float
    student_top_class_share: float
    pgr_dev: float | None
    pgr_test: float | None
    wall_seconds: float
    teacher_cached: bool
    dataset_sha256: str


@dataclass(frozen=True)
class TeacherAndCeiling:
    """What a (task, seed) costs once: the teacher's labels on w2s-train and both reference scores."""

    teacher_probs: np.ndarray
    weak_acc_dev: float
    weak_acc_test: float
    ceiling_acc_dev: float
    ceiling_acc_test: float


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    weak_features: np.ndarray | None
    strong_features: np.ndarray
    splits: dict[str, np.ndarray]


def effective_recipe(recipe: TrainingRecipe, method: MethodSpec | None) -> TrainingRecipe:
    """The recipe with the method's training settings applied, unless production fixes it."""
    if method is None or recipe.fixed:
        return recipe
    overrides = {f: getattr(method, f) for f in RECIPE_FIELDS if getattr(method, f) is not None}
    return recipe.model_copy(update=overrides)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


def top_class_share(probs: np.ndarray) -> float:
    """Share of predictions in the most predicted class: near 1 means a collapsed student."""
    return float(np.bincount(probs.argmax(axis=1)).max() / len(probs))


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


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


def balanced_hardening(probs, prior, iterations: int = 3):
    """Hard labels from the student's predictions whose class mix matches the prior.

    A plain argmax lets one class swallow the batch (the collapse seen with multiclass logconf);
    Sinkhorn rescaling of the columns toward the prior before the argmax keeps every class present,
    and in the binary case it reduces to Burns et al.'s prior-quantile threshold.
    """
    import torch

    scaled = probs.clamp_min(1e-8)
    for _ in range(iterations):
        scaled = scaled * (prior / scaled.mean(dim=0).clamp_min(1e-8))
        scaled = scaled / scaled.sum(dim=1, keepdim=True)
    return torch.nn.functional.one_hot(scaled.argmax(dim=1), probs.shape[1]).to(probs.dtype)


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


def student_loss(kind: str, log_probs, target, aux: float, prior):
    import torch

    def soft_xent(dist):
        return -(dist * log_probs).sum(dim=1).mean()

    if kind == "xent" or aux == 0.0:
        return soft_xent(target)
    own = log_probs.detach().exp()
    if kind == "logconf":
        return (1 - aux) * soft_xent(target) + aux * soft_xent(balanced_hardening(own, prior))
    if kind == "bootstrap":
        return soft_xent((1 - aux) * target + aux * own)
    product = target.clamp_min(1e-8) * own.clamp_min(1e-8) ** aux
    return soft_xent(product / product.sum(dim=1, keepdim=True).clamp_min(torch.finfo().tiny))


def knn_relabel(features: np.ndarray, targets: np.ndarray, k: int, mix: float) -> np.ndarray:
    """Smooth teacher labels over each example's k nearest neighbours in the strong view."""
    normed = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-8)
    neighbour_mean = np.empty_like(targets)
    for start in range(0, len(normed), 1024):
        similarity = normed[start : start + 1024] @ normed.T
        for offset in range(len(similarity)):
            similarity[offset, start + offset] = -np.inf
        nearest = np.argpartition(-similarity, k, axis=1)[:, :k]
        neighbour_mean[start : start + 1024] = targets[nearest].mean(axis=1)
    return (1 - mix) * targets + mix * neighbour_mean


def confident_rows(targets: np.ndarray, fraction: float) -> np.ndarray:
    """The most confident `fraction` of rows within each predicted class (keeps the class mix)."""
    predicted = targets.argmax(axis=1)
    confidence = targets.max(axis=1)
    keep: list[np.ndarray] = []
    for cls in np.unique(predicted):
        members = np.flatnonzero(predicted == cls)
        count = max(1, int(round(fraction * len(members))))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:count]])
    return np.sort(np.concatenate(keep))


def shape_targets(
    teacher: np.ndarray, features: np.ndarray, method: MethodSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Apply the method's label handling; returns (rows to train on, their targets)."""
    targets = teacher.astype(np.float32)
    n_classes = targets.shape[1]
    if method.knn_k:
        targets = knn_relabel(features, targets, method.knn_k, method.knn_mix)
    if method.hard_labels:
        targets = one_hot(targets.argmax(axis=1), n_classes)
    rows = (
        confident_rows(targets, method.confident_fraction)
        if method.confident_fraction < 1.0
        else np.arange(len(targets))
    )
    targets = targets[rows]
    if method.label_smoothing:
        targets = (1 - method.label_smoothing) * targets + method.label_smoothing / n_classes
    return rows, targets.astype(np.float32)


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


class W2SEngine:
    """Runs experiments; owns the teacher/ceiling cache and counts what it trains."""

    def __init__(self, disk_cache: bool = True, workers: int = 1):
        self.disk_cache = disk_cache
        self.workers = workers
        self.training_counts: Counter[str] = Counter()
        self._memory: dict[str, TeacherAndCeiling] = {}
        self._data: dict[tuple[str, int], PreparedData] = {}
        self._lock = threading.Lock()

    def data(self, task: TaskSpec, seed: int) -> PreparedData:
        key = (task.task_hash, seed)
        with self._lock:
            if key in self._data:
                return self._data[key]
        dataset = load_dataset(task.dataset)
        if task.subset:
            dataset = dataset.subset(task.subset, seed=0)
        splits = split_indices(task, len(dataset), seed)
        strong = build_view(task.strong_view, dataset, splits["w2s_train"])
        prepared = PreparedData(dataset, None, strong, splits)
        with self._lock:
            self._data[key] = prepared
        return prepared

    def cache_key(self, task: TaskSpec, dataset: Dataset, seed: int) -> str:
        raw = f"{ENGINE_VERSION}|{task.task_hash}|{dataset.sha256}|{seed}"
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def teacher_and_ceiling(self, task: TaskSpec, seed: int) -> tuple[TeacherAndCeiling, bool]:
        """The cached teacher labels and reference scores for (task, seed); True if cached."""
        data = self.data(task, seed)
        key = self.cache_key(task, data.dataset, seed)
        if key in self._memory:
            return self._memory[key], True
        path = cache_dir("w2s") / f"{key}.npz"
        if self.disk_cache and path.is_file():
            stored = np.load(path)
            entry = TeacherAndCeiling(
                teacher_probs=stored["teacher_probs"],
                **{name: float(stored[name]) for name in TEACHER_SCORES},
            )
            self._memory[key] = entry
            return entry, True
        entry = self._compute_teacher_and_ceiling(task, data, seed)
        self._memory[key] = entry
        if self.disk_cache:
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial.npz")
            np.savez(
                partial,
                teacher_probs=entry.teacher_probs,
                **{name: getattr(entry, name) for name in TEACHER_SCORES},
            )
            partial.replace(path)
        return entry, False

    def _compute_teacher_and_ceiling(
        self, task: TaskSpec, data: PreparedData, seed: int
    ) -> TeacherAndCeiling:
        from sklearn.linear_model import LogisticRegression

        TorchThreads.configure(self.workers)
        labels = data.dataset.labels
        n_classes = data.dataset.n_classes
        splits = data.splits
        weak_view = build_view(task.weak_view, data.dataset, splits["weak_train"])
        weak_labels = noisy_labels(
            labels[splits["weak_train"]], n_classes, task.weak_model.label_noise, seed
        )
        weak = LogisticRegression(C=task.weak_model.C, max_iter=2000)
        weak.fit(weak_view[splits["weak_train"]], weak_labels)
        self.training_counts["weak"] += 1

        def weak_probs(split: str) -> np.ndarray:
            probs = np.zeros((len(splits[split]), n_classes), dtype=np.float32)
            probs[:, weak.classes_] = weak.predict_proba(weak_view[splits[split]])
            return probs

        w2s_rows = splits["w2s_train"]
        ceiling = train_student(
            data.strong_features[w2s_rows],
            one_hot(labels[w2s_rows], n_classes),
            task.recipe,
            MethodSpec(),
            seed,
        )
        self.training_counts["ceiling"] += 1
        return TeacherAndCeiling(
            teacher_probs=weak_probs("w2s_train"),
            weak_acc_dev=accuracy(weak_probs("dev"), labels[splits["dev"]]),
            weak_acc_test=accuracy(weak_probs("test"), labels[splits["test"]]),
            ceiling_acc_dev=self._score(ceiling, data, "dev"),
            ceiling_acc_test=self._score(ceiling, data, "test"),
        )

    @staticmethod
    def _score(model: MLP, data: PreparedData, split: str) -> float:
        rows = data.splits[split]
        return accuracy(model.predict_proba(data.strong_features[rows]), data.dataset.labels[rows])

    def run(self, task: TaskSpec, method: MethodSpec, seed: int) -> TrialResult:
        """One experiment: the student trained with `method` on the teacher's labels, scored."""
        started = time.perf_counter()
        TorchThreads.configure(self.workers)
        reference, cached = self.teacher_and_ceiling(task, seed)
        data = self.data(task, seed)
        recipe = effective_recipe(task.recipe, method)
        w2s_features = data.strong_features[data.splits["w2s_train"]]
        teacher = reference.teacher_probs
        for round_index in range(method.self_training_rounds + 1):
            rows, targets = shape_targets(teacher, w2s_features, method)
            student = train_student(
                w2s_features[rows], targets, recipe, method, seed + 7919 * round_index
            )
            self.training_counts["student"] += 1
            teacher = student.predict_proba(w2s_features)
        dev_acc = self._score(student, data, "dev")
        test_rows = data.splits["test"]
        test_probs = student.predict_proba(data.strong_features[test_rows])
        test_acc = accuracy(test_probs, data.dataset.labels[test_rows])
        return TrialResult(
            task=task.name,
            task_hash=task.task_hash,
            method_hash=method.method_hash,
            method_json=method.canonical_json(),
            seed=seed,
            weak_acc_dev=reference.weak_acc_dev,
            weak_acc_test=reference.weak_acc_test,
            ceiling_acc_dev=reference.ceiling_acc_dev,
            ceiling_acc_test=reference.ceiling_acc_test,
            student_acc_dev=dev_acc,
            student_acc_test=test_acc,
            student_top_class_share=top_class_share(test_probs),
            pgr_dev=pgr(reference.weak_acc_dev, reference.ceiling_acc_dev, dev_acc),
            pgr_test=pgr(reference.weak_acc_test, reference.ceiling_acc_test, test_acc),
            wall_seconds=time.perf_counter() - started,
            teacher_cached=cached,
            dataset_sha256=data.dataset.sha256,
        )


TEACHER_SCORES = ("weak_acc_dev", "weak_acc_test", "ceiling_acc_dev", "ceiling_acc_test")


def noisy_labels(labels: np.ndarray, n_classes: int, noise: float, seed: int) -> np.ndarray:
    """Flip a `noise` fraction of labels to another class (a noisier supervisor's training data)."""
    if noise == 0:
        return labels
    rng = np.random.default_rng([seed, 104729])
    flipped = labels.copy()
    rows = rng.choice(len(labels), size=int(round(noise * len(labels))), replace=False)
    flipped[rows] = (labels[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
    return flipped


def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__
