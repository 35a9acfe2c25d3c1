"""EM relabelling: the teacher as a noisy annotator, the strong view as a classifier, fit jointly.

Source: Raykar, Yu, Zhao, Valadez, Florin, Bogoni, Moy (2010), "Learning From Crowds" (JMLR 11),
which extends Dawid, Skene (1979), "Maximum Likelihood Estimation of Observer Error-Rates Using the
EM Algorithm", to learn a classifier together with the annotator's error model (the 2026
"Automated Alignment Researchers" report found the same EM relabelling for weak-to-strong).

EM infers each row's true label from both views: the M-step fits a class model on the strong
features weighted by the current posteriors, the E-step multiplies its prediction with the
teacher's evidence, and the student is trained on the final posteriors. It helps because the
teacher's mistakes (rows whose weak view lacks the cues, its skewed class prior) are where the
strong view's class structure disagrees with it, so they are corrected before the student can
imitate them.

Details: the class model is a shared-covariance Gaussian (LDA, covariance shrunk toward a scaled
identity) on a PCA of the strong features, cross-fitted over folds so no row is scored by a model
fitted on it. The teacher's evidence is either its probability taken as a calibrated posterior
with a temperature (Bayes for conditionally independent views: strong x teacher / prior) or a
Dawid-Skene confusion matrix re-estimated each iteration. Cost: one student plus fast linear
algebra.
"""

import numpy as np
import w2s_kit

PARAMS = {
    "iterations": {"type": "int", "low": 1, "high": 10, "default": 4},
    "pca_dims": {"type": "int", "low": 4, "high": 384, "default": 64},
    "shrinkage": {"type": "float", "low": 0.001, "high": 1.0, "log": True, "default": 0.1},
    "folds": {"type": "int", "low": 2, "high": 10, "default": 2},
    "teacher_model": {
        "type": "choice",
        "values": ["calibrated", "confusion"],
        "default": "calibrated",
    },
    "teacher_temperature": {"type": "float", "low": 0.25, "high": 4.0, "log": True, "default": 1.0},
    "strong_weight": {"type": "float", "low": 0.0, "high": 2.0, "default": 1.0},
    "teacher_mix": {"type": "float", "low": 0.0, "high": 1.0, "default": 0.0},
}

EPS = 1e-12


def pca(features, dims):
    """Rows projected on the top `dims` principal directions (at most the feature count)."""
    centred = features - features.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)  # ascending; much faster than an SVD
    return centred @ vectors[:, ::-1][:, : min(dims, vectors.shape[1])]


def lda_posterior(train, weights, test, shrinkage):
    """Class posteriors on `test` of a shared-covariance Gaussian model fitted with soft class
    memberships `weights` (rows x classes); the covariance is shrunk toward a scaled identity."""
    mass = weights.sum(axis=0) + EPS
    prior = mass / mass.sum()
    means = (weights.T @ train) / mass[:, None]
    dims = train.shape[1]
    covariance = np.zeros((dims, dims))
    for cls in range(weights.shape[1]):
        centred = train - means[cls]
        covariance += (centred * weights[:, cls : cls + 1]).T @ centred
    covariance /= mass.sum()
    scale = np.trace(covariance) / dims
    covariance = (1 - shrinkage) * covariance + shrinkage * scale * np.eye(dims)
    solved = np.linalg.solve(covariance, means.T)
    logits = test @ solved - 0.5 * np.sum(means.T * solved, axis=0) + np.log(prior)
    return softmax(logits)


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def em_posteriors(features, teacher, params, rng):
    """Run the EM iterations; returns the posterior over the true class for every row."""
    reduced = pca(features.astype(np.float64), int(params["pca_dims"]))
    teacher = teacher.astype(np.float64).clip(EPS, 1.0)
    teacher /= teacher.sum(axis=1, keepdims=True)
    folds = int(params["folds"])
    fold_of = rng.permutation(len(reduced)) % folds
    posterior = teacher.copy()
    for _ in range(int(params["iterations"])):
        strong = np.empty_like(posterior)
        for fold in range(folds):
            held = fold_of == fold
            strong[held] = lda_posterior(
                reduced[~held], posterior[~held], reduced[held], params["shrinkage"]
            )
        log_post = params["strong_weight"] * np.log(strong + EPS)
        if params["teacher_model"] == "calibrated":
            prior = posterior.mean(axis=0)
            log_post += np.log(teacher) / params["teacher_temperature"] - np.log(prior + EPS)
        else:
            confusion = posterior.T @ teacher + EPS
            confusion /= confusion.sum(axis=1, keepdims=True)
            log_post += teacher @ np.log(confusion).T / params["teacher_temperature"]
        posterior = softmax(log_post)
    return posterior


def fit_predict(data):
    params = data.params
    rng = np.random.default_rng([data.seed, 3301])
    posterior = em_posteriors(data.train_features, data.teacher_probs, params, rng)
    mix = params["teacher_mix"]
    targets = (1 - mix) * posterior + mix * data.teacher_probs
    student = w2s_kit.train_mlp(data.train_features, targets, data.recipe, data.seed)
    return student.predict_proba(data.eval_features)
