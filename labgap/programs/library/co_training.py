"""Co-training: two students on disjoint halves of the strong features teach each other.

Source: Blum, Mitchell (1998), "Combining Labeled and Unlabeled Data with Co-Training" (COLT).

The strong features are split at random into two disjoint halves, two views that each suffice to
learn the task but make different mistakes. A student on one view is trained on the teacher's
labels; the other view's student is then trained on the teacher's labels plus the first student's
most confident predictions on the unlabelled pool (the dev+test rows the program receives without
labels); the roles alternate for a few rounds and the final prediction averages both students.
Errors one view makes with confidence are unlikely to be shared by the other, so each student is
taught labels that are cleaner than the teacher's where the other view is sure: the co-training
route to generalising beyond a weak supervisor. Pseudo-labels are chosen class by class in the
teacher's class proportions so the exchange cannot drift toward one class; `train_mix` also mixes
the other student's predictions into the teacher's on the training rows. Default cost: three
students on half the features.
"""

import numpy as np
import w2s_kit

PARAMS = {
    "rounds": {"type": "int", "low": 1, "high": 6, "default": 2},
    "pool_fraction": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.5},
    "train_mix": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.0},
    "hard_pseudo_labels": {"type": "bool", "default": True},
    "view_split": {"type": "choice", "values": ["random", "interleaved"], "default": "random"},
}


def confident_pool_rows(probs, prior, fraction):
    """The most confident rows of each predicted class, `fraction` of the pool in the prior's
    class proportions (capped at what each class has)."""
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    keep = []
    for cls in range(probs.shape[1]):
        members = np.flatnonzero(predicted == cls)
        count = min(len(members), int(round(fraction * len(probs) * prior[cls])))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:count]])
    return np.sort(np.concatenate(keep)).astype(np.int64)


def fit_predict(data):
    params = data.params
    rng = np.random.default_rng([data.seed, 1998])
    train, pool = data.train_features, data.eval_features
    teacher = data.teacher_probs.astype(np.float32)
    prior = teacher.mean(axis=0)
    n_features = train.shape[1]
    if params["view_split"] == "random":
        order = rng.permutation(n_features)
    else:
        order = np.arange(n_features)
    views = [np.sort(order[0::2]), np.sort(order[1::2])]
    if n_features < 2:
        views = [order, order]
    eye = np.eye(data.n_classes, dtype=np.float32)
    students = [None, None]
    pool_probs = [None, None]
    train_probs = [None, None]
    for step in range(int(params["rounds"]) + 1):
        view, other = step % 2, 1 - step % 2
        features, targets = train[:, views[view]], teacher
        if pool_probs[other] is not None:
            mix = params["train_mix"]
            if mix > 0:
                targets = ((1 - mix) * teacher + mix * train_probs[other]).astype(np.float32)
            rows = confident_pool_rows(pool_probs[other], prior, params["pool_fraction"])
            pseudo = pool_probs[other][rows]
            if params["hard_pseudo_labels"]:
                pseudo = eye[pseudo.argmax(axis=1)]
            features = np.concatenate([features, pool[rows][:, views[view]]])
            targets = np.concatenate([targets, pseudo])
        students[view] = w2s_kit.train_mlp(features, targets, data.recipe, data.seed + 7919 * step)
        pool_probs[view] = students[view].predict_proba(pool[:, views[view]])
        if params["train_mix"] > 0:
            train_probs[view] = students[view].predict_proba(train[:, views[view]])
    return (pool_probs[0] + pool_probs[1]) / 2
