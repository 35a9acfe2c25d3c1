"""The weak-to-strong experiment engine: weak teacher, strong student, ceiling, PGR.

Ground truth stays inside the engine package: callers get accuracies and PGR, never labels. The
teacher's labels and the ceiling do not depend on the method, so they are computed once per (task,
seed) and cached in memory and on disk; each further method costs one student training.
"""

import hashlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labgap.data.datasets import Dataset, load_dataset
from labgap.data.features import build_view
from labgap.data.tasks import TaskSpec, TrainingRecipe, split_indices
from labgap.engine.mlp import TrainingTimedOut
from labgap.engine.model import MLP, TorchThreads, train_student
from labgap.engine.targets import noisy_labels, one_hot, shape_targets
from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.paths import cache_dir
from labgap.programs.method import ProgramMethod
from labgap.programs.sandbox import ProgramInputs, Sandbox, SandboxLimits

ENGINE_VERSION = "2"
RECIPE_FIELDS = ("epochs", "lr", "weight_decay", "hidden", "dropout", "batch_size")
TRIAL_TIMEOUT_SECONDS = 900.0
"""The default wall-clock limit of a `MethodSpec`'s training (the config's
`trial_timeout_seconds`), measured on one torch thread: ~5x the most expensive method of the
space on rt-lab (~165 s; 293 s on a machine loaded 2x over its cores), ~80x the slowest built-in
recipe (rt-long-recipe's vanilla, ~11 s). A timed-out trial is failed for good, hence the margin."""


def pgr(weak_acc: float, ceiling_acc: float, student_acc: float) -> float | None:
    """Performance gap recovered; None when undefined (the ceiling does not beat the teacher)."""
    gap = ceiling_acc - weak_acc
    if gap <= 0:
        return None
    return (student_acc - weak_acc) / gap


class TrialIdentity(BaseModel):
    """Which experiment: one task × method × seed (a trial's natural key, with its names)."""

    model_config = ConfigDict(frozen=True)

    task: str
    task_hash: str
    method_hash: str
    method_json: str
    seed: int


class TrialResult(TrialIdentity):
    """One task × method × seed experiment, as the pipeline measured it."""

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
    program_cpu_seconds: float | None = None
    """CPU seconds a program's sandboxed run used (what its scoring is charged by); None for an
    in-process `MethodSpec` trial."""


class TrialFailure(TrialIdentity):
    """A trial whose method did not produce predictions (a program raised, timed out, exceeded a
    limit or returned bad output; a `MethodSpec` trained past the trial timeout): recorded with its
    error, never retried, never scored."""

    error: str
    cpu_seconds: float
    """A program's CPU seconds; for a `MethodSpec`, its thread's (torch's own threads not
    counted)."""
    wall_seconds: float


class TrialLimits(BaseModel):
    """What bounds one trial: a program runs under the sandbox's limits; a `MethodSpec` stops
    training after `timeout_seconds` of wall-clock time (None: never), checked between minibatches
    so that it works in every executor."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    sandbox: SandboxLimits = Field(default_factory=SandboxLimits)
    timeout_seconds: float | None = TRIAL_TIMEOUT_SECONDS


Outcome = TrialResult | TrialFailure


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
    strong_features: np.ndarray
    splits: dict[str, np.ndarray]


def effective_recipe(recipe: TrainingRecipe, method: Method | None) -> TrainingRecipe:
    """The recipe with the method's training settings applied, unless production fixes it. A
    program receives the task's recipe and decides itself what to do with it."""
    if not isinstance(method, MethodSpec) or recipe.fixed:
        return recipe
    overrides = {f: getattr(method, f) for f in RECIPE_FIELDS if getattr(method, f) is not None}
    return recipe.model_copy(update=overrides)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == labels).mean())


def top_class_share(probs: np.ndarray) -> float:
    """Share of predictions in the most predicted class: near 1 means a collapsed student."""
    return float(np.bincount(probs.argmax(axis=1)).max() / len(probs))


class W2SEngine:
    """Runs experiments; owns the teacher/ceiling cache and counts what it trains."""

    def __init__(self, disk_cache: bool = True, workers: int = 1):
        self.disk_cache = disk_cache
        self.workers = workers
        self.training_counts: Counter[str] = Counter()
        self._memory: dict[str, TeacherAndCeiling] = {}
        self._data: dict[tuple[str, int], PreparedData] = {}
        self._lock = threading.Lock()
        self._sandboxes: dict[SandboxLimits, Sandbox] = {}

    def sandbox(self, limits: SandboxLimits) -> Sandbox:
        """One sandbox (a pool of warm program servers) per set of limits, started when needed."""
        with self._lock:
            if limits not in self._sandboxes:
                self._sandboxes[limits] = Sandbox(limits)
            return self._sandboxes[limits]

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
        prepared = PreparedData(dataset, strong, splits)
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

    def run(
        self,
        task: TaskSpec,
        method: Method,
        seed: int,
        limits: TrialLimits | None = None,
    ) -> Outcome:
        """One experiment: the student trained with `method` on the teacher's labels, scored. A
        program runs in the sandbox under `limits.sandbox`, a `MethodSpec`'s training stops after
        `limits.timeout_seconds` (the teacher and ceiling are the task's, not bounded); if either
        fails, the outcome says why."""
        started = time.perf_counter()
        limits = limits or TrialLimits()
        threads = TorchThreads.configure(self.workers)
        reference, cached = self.teacher_and_ceiling(task, seed)
        data = self.data(task, seed)
        cpu_seconds = None
        if isinstance(method, ProgramMethod):
            sandbox = self.sandbox(limits.sandbox)
            outcome = self._run_program(task, method, seed, reference, data, sandbox, threads)
            if isinstance(outcome, TrialFailure):
                return outcome
            dev_probs, test_probs, cpu_seconds = outcome
        else:
            trained = self._train(task, method, seed, reference, data, limits.timeout_seconds)
            if isinstance(trained, TrialFailure):
                return trained
            dev_probs, test_probs = trained
        labels = data.dataset.labels
        dev_acc = accuracy(dev_probs, labels[data.splits["dev"]])
        test_acc = accuracy(test_probs, labels[data.splits["test"]])
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
            program_cpu_seconds=cpu_seconds,
        )

    def _train(
        self,
        task: TaskSpec,
        method: MethodSpec,
        seed: int,
        reference: TeacherAndCeiling,
        data: PreparedData,
        timeout: float | None,
    ) -> tuple[np.ndarray, np.ndarray] | TrialFailure:
        """The in-process student of a `MethodSpec`: its dev and test probabilities, or a failure
        once its training (every self-training round's) has taken more than `timeout` seconds."""
        recipe = effective_recipe(task.recipe, method)
        w2s_features = data.strong_features[data.splits["w2s_train"]]
        teacher = reference.teacher_probs
        started, cpu = time.monotonic(), time.thread_time()
        deadline = None if timeout is None else started + timeout
        students = method.self_training_rounds + 1
        for round_index in range(students):
            rows, targets = shape_targets(teacher, w2s_features, method)
            try:
                student = train_student(
                    w2s_features[rows], targets, recipe, method, seed + 7919 * round_index, deadline
                )
            except TrainingTimedOut as stopped:
                error = (
                    f"timed out: training took longer than the {timeout:g} s trial timeout "
                    f"(trial_timeout_seconds); {stopped}, student {round_index + 1} of {students}"
                )
                cpu_seconds, wall = time.thread_time() - cpu, time.monotonic() - started
                return _failure(task, method, seed, error, cpu_seconds, wall)
            self.training_counts["student"] += 1
            teacher = student.predict_proba(w2s_features)
        features = data.strong_features
        return (
            student.predict_proba(features[data.splits["dev"]]),
            student.predict_proba(features[data.splits["test"]]),
        )

    def _run_program(
        self,
        task: TaskSpec,
        method: ProgramMethod,
        seed: int,
        reference: TeacherAndCeiling,
        data: PreparedData,
        sandbox: Sandbox,
        threads: int,
    ) -> tuple[np.ndarray, np.ndarray, float] | TrialFailure:
        """Run a program label-sealed: it sees the teacher's probabilities and the unlabelled
        strong view of dev and test rows together, shuffled, with nothing marking the split."""
        features = data.strong_features
        dev, test = data.splits["dev"], data.splits["test"]
        evaluation = np.concatenate([dev, test])
        order = np.random.default_rng([seed, len(evaluation), 7121]).permutation(len(evaluation))
        inputs = ProgramInputs(
            train_features=features[data.splits["w2s_train"]],
            teacher_probs=reference.teacher_probs,
            eval_features=features[evaluation[order]],
            n_classes=data.dataset.n_classes,
            seed=seed,
            recipe=task.recipe.model_dump(include=set(RECIPE_FIELDS)),
            params=dict(method.params),
        )
        run = sandbox.run(method.source, inputs, threads=threads)
        self.training_counts["program"] += 1
        if run.probs is None:
            error = run.error or "the program returned nothing"
            return _failure(task, method, seed, error, run.cpu_seconds, run.wall_seconds)
        probs = np.empty_like(run.probs)
        probs[order] = run.probs
        return probs[: len(dev)], probs[len(dev) :], run.cpu_seconds


def _failure(
    task: TaskSpec, method: Method, seed: int, error: str, cpu_seconds: float, wall_seconds: float
) -> TrialFailure:
    return TrialFailure(
        task=task.name,
        task_hash=task.task_hash,
        method_hash=method.method_hash,
        method_json=method.canonical_json(),
        seed=seed,
        error=error,
        cpu_seconds=cpu_seconds,
        wall_seconds=wall_seconds,
    )


TEACHER_SCORES = ("weak_acc_dev", "weak_acc_test", "ceiling_acc_dev", "ceiling_acc_test")
