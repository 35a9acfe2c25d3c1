"""Curriculum self-training: learn from the teacher's surest rows first, then widen and relabel.

Sources: Kumar, Packer, Koller (2010), "Self-Paced Learning for Latent Variable Models" (NeurIPS),
and Lang, Sontag, Vijayaraghavan (2024), "Theoretical Analysis of Weak-to-Strong Generalization"
(NeurIPS), whose pseudolabel-correction and coverage-expansion results explain why it helps.

One student is trained in stages on a growing share of the rows, the teacher's most confident
first (self-paced learning's easy-to-hard curriculum); between stages the targets are relabelled
as a mix of the teacher's probabilities and the student's own predictions. The student thus
learns first where the teacher is reliable, then corrects teacher errors it is sure about
(pseudolabel correction) and extends what it learned to rows where the teacher was guessing
(coverage expansion), instead of memorising the teacher's mistakes from the first epoch.

Details: rows are chosen per class in the teacher's mean class proportions, so the curriculum does
not inherit the teacher's skewed argmax mix; rows can also be weighted by confidence
(`confidence_power`, off by default: it hurt on the RT lab task). The stages continue training one
model and share one budget of recipe.epochs x `epochs_scale` epochs, so the default costs less
than one vanilla student; `fresh_student` restarts from a new model each stage instead.
"""

import numpy as np
import w2s_kit

PARAMS = {
    "stages": {"type": "int", "low": 1, "high": 6, "default": 3},
    "start_fraction": {"type": "float", "low": 0.1, "high": 1.0, "default": 0.2},
    "confidence_power": {"type": "float", "low": 0.0, "high": 4.0, "default": 0.0},
    "self_mix": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.75},
    "epochs_scale": {"type": "float", "low": 0.5, "high": 3.0, "default": 1.0},
    "fresh_student": {"type": "bool", "default": False},
}


def select_rows(targets, prior, fraction):
    """The most confident rows of each class (by the targets' argmax), as many per class as
    `fraction` of all rows times that class's share in `prior` (capped at what the class has)."""
    predicted = targets.argmax(axis=1)
    confidence = targets.max(axis=1)
    keep = []
    for cls in range(targets.shape[1]):
        members = np.flatnonzero(predicted == cls)
        count = min(len(members), int(round(fraction * len(targets) * prior[cls])))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:count]])
    rows = np.sort(np.concatenate(keep))
    return rows if len(rows) else np.arange(len(targets))


def confidence_weights(targets, power):
    """(max probability - 1/C) / (1 - 1/C), raised to `power`, floored so no row is silenced."""
    n_classes = targets.shape[1]
    margin = (targets.max(axis=1) - 1.0 / n_classes) / (1.0 - 1.0 / n_classes)
    return np.clip(margin, 0.05, 1.0) ** power


def fit_predict(data):
    params = data.params
    features = data.train_features
    teacher = data.teacher_probs.astype(np.float32)
    prior = teacher.mean(axis=0)
    stages = int(params["stages"])
    total_epochs = max(stages, int(round(data.recipe.epochs * params["epochs_scale"])))
    fractions = np.linspace(params["start_fraction"], 1.0, stages) if stages > 1 else [1.0]
    targets = teacher
    model = None
    for stage, fraction in enumerate(fractions):
        epochs = total_epochs // stages + (1 if stage < total_epochs % stages else 0)
        recipe = w2s_kit.recipe_with(data.recipe, epochs=epochs)
        rows = select_rows(targets, prior, fraction)
        weights = confidence_weights(targets[rows], params["confidence_power"])
        if params["fresh_student"]:
            model = None
        seed = data.seed + 7919 * stage
        model = w2s_kit.train_mlp(features[rows], targets[rows], recipe, seed, weights, model)
        own = model.predict_proba(features)
        mix = params["self_mix"]
        targets = ((1 - mix) * teacher + mix * own).astype(np.float32)
    return model.predict_proba(data.eval_features)
