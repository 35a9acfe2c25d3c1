"""Overlap-density filtering: train where the teacher's easy patterns meet the hard ones.

Source: Shin, Cooper, Sala (2024), "Weak-to-Strong Generalization Through the Data-Centric Lens"
(ICLR 2025).

Points carry easy patterns (visible to the weak model), hard patterns (only the strong model sees
them) or both; the teacher is reliable only where an easy pattern is present, and the overlap
points that carry both are where the student learns the hard patterns from correct labels, which
lets it generalise to the hard-only points on which the teacher is guessing. So the student is
trained on a reweighted set: hard-only rows dropped, overlap rows up-weighted.

Details, adapted from the paper's overlap-detection algorithm: the least confident share of the
teacher's rows is taken as hard-only (weight `hard_weight`); every other row's overlap score is its
mean strong-view cosine similarity to its `overlap_k` most similar hard-only rows, and the top
`overlap_fraction` of them are up-weighted by `overlap_boost`. Optionally (`agreement_k` > 0), rows
whose strong-view neighbourhood votes against the teacher's label are down-weighted. Because
dropping low-confidence rows skews the label mix toward the teacher's over-predicted class, the
weights are rescaled per class to the teacher's mean probability (`balance_classes`); on the RT lab
task most of the gain over vanilla comes from that rebalancing. Cost: one student.
"""

import numpy as np
import w2s_kit

PARAMS = {
    "hard_fraction": {"type": "float", "low": 0.0, "high": 0.7, "default": 0.3},
    "hard_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.0},
    "overlap_k": {"type": "int", "low": 1, "high": 100, "default": 10},
    "overlap_fraction": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "overlap_boost": {"type": "float", "low": 1.0, "high": 5.0, "default": 2.0},
    "agreement_k": {"type": "int", "low": 0, "high": 100, "default": 0},
    "disagree_weight": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "hard_labels": {"type": "bool", "default": False},
    "balance_classes": {"type": "bool", "default": True},
}

BLOCK = 1024


def unit_rows(features):
    features = features.astype(np.float32)
    return features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-8)


def top_k_similar(queries, keys, k, exclude_self=False):
    """Indices and similarities of each query's k most similar keys (blocked, so memory stays
    bounded); with exclude_self the queries are the keys and a row never picks itself."""
    k = max(1, min(k, len(keys) - int(exclude_self)))
    indices = np.empty((len(queries), k), dtype=np.int64)
    similarities = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        block = queries[start : start + BLOCK] @ keys.T
        if exclude_self:
            rows = np.arange(len(block))
            block[rows, start + rows] = -np.inf
        nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
        indices[start : start + BLOCK] = nearest
        similarities[start : start + BLOCK] = np.take_along_axis(block, nearest, axis=1)
    return indices, similarities


def row_weights(features, teacher, params):
    """The per-row training weights: hard-only rows, overlap rows and kNN disagreements."""
    unit = unit_rows(features)
    confidence = teacher.max(axis=1)
    n_rows = len(teacher)
    weights = np.ones(n_rows)
    n_hard = int(round(params["hard_fraction"] * n_rows))
    order = np.argsort(confidence, kind="stable")
    hard = np.zeros(n_rows, dtype=bool)
    hard[order[:n_hard]] = True
    weights[hard] = params["hard_weight"]
    easy = np.flatnonzero(~hard)
    if n_hard and len(easy) and params["overlap_fraction"] > 0:
        _, similarity = top_k_similar(unit[easy], unit[hard], int(params["overlap_k"]))
        score = similarity.mean(axis=1)
        n_overlap = int(round(params["overlap_fraction"] * len(easy)))
        overlap = easy[np.argsort(-score, kind="stable")[:n_overlap]]
        weights[overlap] *= params["overlap_boost"]
    if params["agreement_k"] > 0:
        neighbours, _ = top_k_similar(unit, unit, int(params["agreement_k"]), exclude_self=True)
        vote = teacher[neighbours].mean(axis=1).argmax(axis=1)
        weights[vote != teacher.argmax(axis=1)] *= params["disagree_weight"]
    if weights.sum() <= 0:
        weights[:] = 1.0
    if params["balance_classes"]:
        weights = balanced(weights, teacher)
    return weights


def balanced(weights, teacher):
    """Rescale each class's rows (by the teacher's argmax) so the weighted label mix equals the
    teacher's mean probability, which keeps filtering from skewing the student's class prior."""
    predicted = teacher.argmax(axis=1)
    target = teacher.mean(axis=0)
    scaled = weights.copy()
    for cls in range(teacher.shape[1]):
        members = predicted == cls
        mass = weights[members].sum()
        if mass > 0:
            scaled[members] *= target[cls] * weights.sum() / mass
    return scaled


def fit_predict(data):
    teacher = data.teacher_probs
    weights = row_weights(data.train_features, teacher, data.params)
    if data.params["hard_labels"]:
        teacher = np.eye(data.n_classes, dtype=np.float32)[teacher.argmax(axis=1)]
    student = w2s_kit.train_mlp(data.train_features, teacher, data.recipe, data.seed, weights)
    return student.predict_proba(data.eval_features)
