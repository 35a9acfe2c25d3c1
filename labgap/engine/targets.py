"""Label shaping: the noisy labels a weaker supervisor learns from, and what a method does to the
teacher's labels before the student sees them (kNN smoothing, hardening, confident-row selection,
label smoothing)."""

import numpy as np

from labgap.methods.spec import MethodSpec


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[labels]


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


def noisy_labels(labels: np.ndarray, n_classes: int, noise: float, seed: int) -> np.ndarray:
    """Flip a `noise` fraction of labels to another class (a noisier supervisor's training data)."""
    if noise == 0:
        return labels
    rng = np.random.default_rng([seed, 104729])
    flipped = labels.copy()
    rows = rng.choice(len(labels), size=int(round(noise * len(labels))), replace=False)
    flipped[rows] = (labels[rows] + rng.integers(1, n_classes, size=len(rows))) % n_classes
    return flipped
