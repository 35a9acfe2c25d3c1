"""Borrowing an idea: another agent's method with one or two of its numbers nudged.

A `MethodSpec` is varied in its active numeric fields; a program in its declared `PARAMS`. Either
way every nudge is a real change within the valid range, drawn from the borrower's own RNG.
"""

import random
from typing import Any

from annotated_types import Ge, Le

from labgap.methods.kinds import Method
from labgap.methods.spec import MethodSpec
from labgap.programs.method import ParamRange, ProgramMethod

# Fields a borrowed idea is varied in: scale-free ones are multiplied, bounded ones are shifted.
# Structural choices (loss, hard labels, hidden, self-training rounds) are kept: they are the idea.
SCALED_FIELDS = ("knn_k", "epochs", "lr", "batch_size")
SHIFTED_FIELDS = (
    "aux_weight",
    "warmup",
    "label_smoothing",
    "confident_fraction",
    "knn_mix",
    "weight_decay",
    "dropout",
)


SCALE_FACTORS = (0.5, 0.7, 1.4, 2.0)
MAX_SHIFT = 0.2
"""Largest shift of a bounded field, as a fraction of its valid range (the smallest is 0.05)."""


def vary(method: Method, rng: random.Random) -> tuple[Method, list[str]]:
    """A variation of either kind of method, with its changes as text."""
    if isinstance(method, ProgramMethod):
        return vary_program(method, rng)
    return vary_method(method, rng)


def vary_program(method: ProgramMethod, rng: random.Random) -> tuple[ProgramMethod, list[str]]:
    """`method` with one or two of its parameters moved within their declared ranges: numbers
    shifted by 5–20% of the range (scaled on a log range), a flag flipped, another option."""
    space = method.param_space
    names = rng.sample(sorted(space), k=min(len(space), rng.choice((1, 2))))
    updates: dict[str, Any] = {}
    changes = []
    for name in sorted(names):
        old = method.params[name]
        updates[name] = _move(space[name], old, rng)
        changes.append(f"{name} {_format(old)}→{_format(updates[name])}")
    return method.with_params({**method.params, **updates}), changes


def _move(spec: ParamRange, old: Any, rng: random.Random) -> Any:
    if spec.type == "bool":
        return not old
    if spec.type == "choice":
        others = [value for value in spec.values or [] if value != old]
        return rng.choice(others) if others else old
    if spec.log:
        factor = rng.choice(SCALE_FACTORS)
        new = old * factor if spec.low <= old * factor <= spec.high else old / factor
    else:
        shift = rng.uniform(0.05, MAX_SHIFT) * (spec.high - spec.low) * rng.choice((-1, 1))
        new = old + shift if spec.low <= old + shift <= spec.high else old - shift
    new = min(max(new, spec.low), spec.high)
    if spec.type == "int":
        rounded = round(new)
        if rounded == old and spec.low < spec.high:
            rounded = old + 1 if old + 1 <= spec.high else old - 1
        return int(rounded)
    return float(f"{new:.3g}")


def vary_method(method: MethodSpec, rng: random.Random) -> tuple[MethodSpec, list[str]]:
    """`method` with one or two of its active numeric fields nudged within MethodSpec's valid
    ranges (every nudge is a real change); also returns the changes as text ("lr 0.001→0.0014")."""
    candidates = [name for name in SCALED_FIELDS + SHIFTED_FIELDS if _is_active(method, name)]
    names = rng.sample(candidates, k=min(len(candidates), rng.choice((1, 2))))
    updates: dict[str, Any] = {}
    changes = []
    for name in sorted(names, key=list(MethodSpec.model_fields).index):
        old = getattr(method, name)
        updates[name] = _nudge(name, old, rng)
        changes.append(f"{name} {_format(old)}→{_format(updates[name])}")
    return MethodSpec.model_validate({**method.model_dump(), **updates}), changes


def _nudge(name: str, old: float | int, rng: random.Random) -> float | int:
    """Scale a scale-free field by 0.5–2x, or shift a bounded one by 5–20% of its range, turning
    back at a bound. Every scaled range spans more than 4x, so one of the two directions fits."""
    low, high = _valid_range(name)
    if name in SCALED_FIELDS:
        factor = rng.choice(SCALE_FACTORS)
        if not low <= old * factor <= high:
            factor = 1 / factor
        if isinstance(old, int):
            new = round(old * factor)
            if new == old:
                new = old + (1 if factor > 1 else -1)
        else:
            new = float(f"{old * factor:.3g}")
    else:
        shift = rng.uniform(0.05, MAX_SHIFT) * (high - low) * rng.choice((-1, 1))
        if not low <= old + shift <= high:
            shift = -shift
        new = round(old + shift, 3)
    return min(max(new, low), high)


def _is_active(method: MethodSpec, name: str) -> bool:
    """Whether changing `name` changes the method: unset recipe fields and the knobs of a switched-
    off component (aux weight under plain xent, kNN mix without kNN) are inactive."""
    if getattr(method, name) is None:
        return False
    if name in ("aux_weight", "warmup"):
        return method.loss != "xent"
    if name in ("knn_k", "knn_mix"):
        return method.knn_k != 0
    return True


def _valid_range(name: str) -> tuple[float, float]:
    if name == "knn_k":
        return 5, 50  # MethodSpec allows 0 (off) or 5–50; a borrowed kNN idea stays on
    rules = MethodSpec.model_fields[name].metadata
    low = next(rule.ge for rule in rules if isinstance(rule, Ge))
    high = next(rule.le for rule in rules if isinstance(rule, Le))
    return low, high


def _format(value: float | int) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
