"""Vanilla weak-to-strong training, written as a method program, with two tunable knobs.

The student (the seeded MLP of `w2s_kit`) learns from the weak teacher's probabilities, sharpened
by a temperature, on the most confident share of the rows. At the defaults (temperature 1, keep
everything) it is exactly labgap's built-in `vanilla` method.
"""

import numpy as np
import w2s_kit

PARAMS = {
    "temperature": {"type": "float", "low": 0.25, "high": 4.0, "log": True, "default": 1.0},
    "keep_fraction": {"type": "float", "low": 0.3, "high": 1.0, "default": 1.0},
}


def fit_predict(data) -> np.ndarray:
    teacher = np.power(data.teacher_probs, 1.0 / data.params["temperature"])
    teacher /= teacher.sum(axis=1, keepdims=True)
    confidence = teacher.max(axis=1)
    n_kept = int(len(teacher) * data.params["keep_fraction"])
    kept = np.sort(np.argsort(-confidence, kind="stable")[:n_kept])
    model = w2s_kit.train_mlp(data.train_features[kept], teacher[kept], data.recipe, data.seed)
    return model.predict_proba(data.eval_features)
