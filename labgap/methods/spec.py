"""The weak-to-strong method space: everything an agent may choose, with validated ranges.

A `MethodSpec` says how the strong student learns from the weak teacher's labels. Training
dynamics (epochs, lr, ...) left as None follow the task's recipe, so a method's idea can be tried
on a production target whose recipe differs.
"""

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from labgap.errors import LabgapInputError, describe_validation

Loss = Literal["xent", "logconf", "bootstrap", "product"]
HIDDEN_SIZES = (0, 64, 256, 1024)


class MethodSpec(BaseModel):
    """One weak-to-strong training method. Every field has a documented, validated range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    loss: Loss = Field(
        "xent",
        description=(
            "xent: cross-entropy to the teacher; logconf: auxiliary confidence loss toward the "
            "student's own class-balanced hardened predictions (Burns et al. 2023); bootstrap: "
            "soft self-targets mixed into the teacher's; product: product of teacher and student"
        ),
    )
    aux_weight: float = Field(0.0, ge=0.0, le=1.0, description="weight of the student's own view")
    warmup: float = Field(
        0.0, ge=0.0, le=0.5, description="fraction of training over which aux_weight ramps up"
    )
    hard_labels: bool = Field(False, description="train on the teacher's argmax, not its probs")
    label_smoothing: float = Field(0.0, ge=0.0, le=0.3)
    confident_fraction: float = Field(
        1.0, ge=0.3, le=1.0, description="keep this most-confident fraction of teacher labels"
    )
    knn_k: int = Field(
        0, description="relabel each example from its k nearest neighbours in the strong view"
    )
    knn_mix: float = Field(0.0, ge=0.0, le=1.0, description="weight of the kNN relabelling")
    self_training_rounds: int = Field(
        0, ge=0, le=2, description="retrain on the student's own predictions this many times"
    )
    epochs: int | None = Field(None, ge=1, le=100, description="None: the task's recipe")
    lr: float | None = Field(None, ge=1e-4, le=1e-2, description="None: the task's recipe")
    weight_decay: float | None = Field(None, ge=0.0, le=0.1)
    hidden: Literal[0, 64, 256, 1024] | None = Field(
        None, description="hidden units; 0 = linear probe; None: the task's recipe"
    )
    dropout: float | None = Field(None, ge=0.0, le=0.5)
    batch_size: int | None = Field(None, ge=32, le=512)

    @model_validator(mode="after")
    def _check_knn(self) -> "MethodSpec":
        if self.knn_k != 0 and not 5 <= self.knn_k <= 50:
            raise ValueError("knn_k must be 0 (off) or between 5 and 50")
        return self

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def method_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    def describe(self) -> str:
        """A compact, human-readable method: its loss, then every field not at its default."""
        defaults = MethodSpec()
        parts = [self.loss]
        for name in MethodSpec.model_fields:
            value = getattr(self, name)
            if name == "loss" or value == getattr(defaults, name):
                continue
            if isinstance(value, bool):
                parts.append(name)
            elif isinstance(value, float):
                parts.append(f"{name}={value:.3g}")
            else:
                parts.append(f"{name}={value}")
        return " ".join(parts)

    @property
    def family(self) -> str:
        """A coarse label of the idea (loss plus the data-side tricks used), for diversity views."""
        parts = [self.loss]
        if self.confident_fraction < 1.0:
            parts.append("confident")
        if self.knn_k:
            parts.append("knn")
        if self.self_training_rounds:
            parts.append("self-train")
        if self.hard_labels:
            parts.append("hard")
        return "+".join(parts)


PRESETS: dict[str, MethodSpec] = {
    "vanilla": MethodSpec(),
    "logconf": MethodSpec(loss="logconf", aux_weight=0.75, warmup=0.2),
    "confident": MethodSpec(confident_fraction=0.6),
    "bootstrap": MethodSpec(loss="bootstrap", aux_weight=0.5, warmup=0.2),
    "early-stop": MethodSpec(epochs=2),
    "knn-relabel": MethodSpec(knn_k=10, knn_mix=0.5),
}


def resolve_method(name_or_json: str) -> MethodSpec:
    """A preset by name, or a method given as JSON (validated)."""
    if name_or_json in PRESETS:
        return PRESETS[name_or_json]
    if name_or_json.lstrip().startswith("{"):
        try:
            return MethodSpec.model_validate_json(name_or_json)
        except ValidationError as error:
            raise LabgapInputError(describe_validation(error, "method JSON")) from None
    raise LabgapInputError(
        f"unknown method {name_or_json!r}; expected one of {sorted(PRESETS)} or a MethodSpec JSON"
    )


def preset_name(method: MethodSpec) -> str | None:
    return next((name for name, preset in PRESETS.items() if preset == method), None)
