"""Task specifications: each a fully specified weak-to-strong problem, and the built-in ones.

A task fixes the data, what the weak teacher and the strong student see, how many rows each split
gets and the training recipe. Production targets differ from the lab task in exactly one of these
(a bigger recipe, a noisier teacher, other data), which is what a transfer trial probes.
"""

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labgap.data.datasets import BuiltinDataset, DatasetRef
from labgap.data.features import (
    EmbeddingView,
    FeatureView,
    NumericView,
    PixelSummaryView,
    TfidfView,
)
from labgap.errors import LabgapInputError, describe_validation


class WeakModel(BaseModel):
    """The weak supervisor: logistic regression trained on ground truth in the weak view."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: Literal["logistic"] = "logistic"
    C: float = Field(1.0, gt=0, le=1000, description="inverse regularisation strength")
    label_noise: float = Field(
        0.0, ge=0.0, le=0.5, description="fraction of the weak model's training labels flipped"
    )


class TrainingRecipe(BaseModel):
    """How the strong model is trained (student and ceiling alike) unless a method overrides it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    epochs: int = Field(20, ge=1, le=200)
    lr: float = Field(1e-3, ge=1e-5, le=1e-1)
    weight_decay: float = Field(0.0, ge=0.0, le=0.5)
    hidden: Literal[0, 64, 256, 1024] = 256
    dropout: float = Field(0.1, ge=0.0, le=0.9)
    batch_size: int = Field(64, ge=8, le=4096)
    fixed: bool = Field(
        False,
        description=(
            "production infrastructure: the recipe wins over a method's training settings, so only "
            "the method's idea (loss, label handling) transfers"
        ),
    )


class SplitSizes(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    weak_train: int = Field(ge=10, description="rows the weak model is trained on")
    w2s_train: int = Field(ge=10, description="rows the student learns from the teacher's labels")
    dev: int | None = Field(None, ge=10, description="None: half of what is left")
    test: int | None = Field(None, ge=10, description="None: the rest")


class TaskSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    dataset: DatasetRef
    subset: int | None = Field(
        None, ge=40, description="use a stratified random subset of this many rows (fixed seed)"
    )
    weak_view: FeatureView
    weak_model: WeakModel = WeakModel()
    strong_view: FeatureView
    recipe: TrainingRecipe = TrainingRecipe()
    splits: SplitSizes

    @model_validator(mode="after")
    def _views_share_kind(self) -> "TaskSpec":
        text_views = (TfidfView, EmbeddingView)
        if isinstance(self.weak_view, text_views) != isinstance(self.strong_view, text_views):
            raise ValueError("weak_view and strong_view must both be text views or both numeric")
        return self

    @property
    def task_hash(self) -> str:
        """Identifies what the task computes (its description is not part of it)."""
        body = self.model_dump(mode="json", exclude={"description"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


SPLIT_NAMES = ("weak_train", "w2s_train", "dev", "test")


def split_indices(task: TaskSpec, n_rows: int, seed: int) -> dict[str, np.ndarray]:
    """Disjoint random splits for one seed; a size that does not fit is a clear error."""
    sizes = task.splits
    fixed = sizes.weak_train + sizes.w2s_train
    rest = n_rows - fixed
    dev = sizes.dev if sizes.dev is not None else rest // 2
    test = sizes.test if sizes.test is not None else rest - dev
    if min(dev, test) < 10 or fixed + dev + test > n_rows:
        raise LabgapInputError(
            f"task {task.name!r}: splits weak_train={sizes.weak_train}, w2s_train="
            f"{sizes.w2s_train}, dev={sizes.dev}, test={sizes.test} need "
            f"{fixed + max(dev, 10) + max(test, 10)} rows but the dataset has {n_rows}; "
            "reduce the split sizes"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    bounds = np.cumsum([0, sizes.weak_train, sizes.w2s_train, dev, test])
    return {name: np.sort(order[bounds[i] : bounds[i + 1]]) for i, name in enumerate(SPLIT_NAMES)}


RT_SPLITS = SplitSizes(weak_train=4000, w2s_train=6000)


def rotten_tomatoes_task(name: str, description: str, **changes) -> TaskSpec:
    """The lab task, or a production variant that differs from it only in `changes`."""
    lab = {
        "dataset": BuiltinDataset(name="rotten-tomatoes"),
        "weak_view": TfidfView(max_features=300),
        "strong_view": EmbeddingView(),
        "splits": RT_SPLITS,
    }
    return TaskSpec(name=name, description=description, **{**lab, **changes})


BUILTIN_TASKS: dict[str, TaskSpec] = {
    task.name: task
    for task in [
        rotten_tomatoes_task(
            "rt-lab",
            "Rotten Tomatoes sentiment: LR on TF-IDF(300) -> MLP on MiniLM embeddings",
        ),
        rotten_tomatoes_task(
            "rt-long-recipe",
            "rt-lab under a production training recipe: 60 epochs, hidden 1024, batch 256, fixed",
            recipe=TrainingRecipe(epochs=60, hidden=1024, batch_size=256, fixed=True),
        ),
        rotten_tomatoes_task(
            "rt-noisy-teacher",
            "rt-lab with 20% label noise in the weak model's training labels",
            weak_model=WeakModel(label_noise=0.2),
        ),
        TaskSpec(
            name="bbc-heldout",
            description="BBC News 5 topics: LR on TF-IDF(50) -> MLP on MiniLM embeddings",
            dataset=BuiltinDataset(name="bbc-news"),
            weak_view=TfidfView(max_features=50),
            strong_view=EmbeddingView(),
            splits=SplitSizes(weak_train=600, w2s_train=900),
        ),
        TaskSpec(
            name="digits-heldout",
            description="sklearn digits: LR on 4x4-block pixel means -> MLP on all 64 pixels",
            dataset=BuiltinDataset(name="digits"),
            weak_view=PixelSummaryView(block=4),
            strong_view=NumericView(),
            splits=SplitSizes(weak_train=500, w2s_train=700),
        ),
    ]
}


def resolve_task(name_or_path: str) -> TaskSpec:
    """A built-in task by name, or a TaskSpec from a YAML/JSON file (a user's own data)."""
    if name_or_path in BUILTIN_TASKS:
        return BUILTIN_TASKS[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        raise LabgapInputError(
            f"unknown task {name_or_path!r}; expected one of {sorted(BUILTIN_TASKS)} "
            "or a .yaml/.json TaskSpec file"
        )
    try:
        return TaskSpec.model_validate(read_config_file(path, "task file"))
    except ValidationError as error:
        raise LabgapInputError(describe_validation(error, f"task file {path}")) from None


def read_config_file(path: Path, what: str) -> dict:
    if not path.is_file():
        raise LabgapInputError(f"{what} {path} not found")
    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        problem = " ".join(str(error).split())
        raise LabgapInputError(f"{what} {path} is not valid YAML/JSON: {problem}") from None
    if not isinstance(body, dict):
        raise LabgapInputError(f"{what} {path} must hold a mapping of fields")
    return body
