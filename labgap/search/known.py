"""The known-methods baseline: what a careful human would have found with one agent's budget.

The seed study's first claim is that its agents beat human researchers who tuned the known
methods. To ask the same of every study, a scripted "human" spends the same scoring budget one
agent had: it tries the published presets in order (the literature first) and, with budget left,
nudges the best one's knobs; its best by mean dev PGR on the search seeds is the known-methods
baseline, confirmed beside the agents' winner on the same fresh seeds.
"""

import random

from pydantic import BaseModel, ConfigDict

from labgap.data.tasks import TaskSpec
from labgap.methods.spec import PRESETS, MethodSpec
from labgap.search.scoring import TrialSource, mean_and_se
from labgap.search.variation import vary_method

KNOWN_METHODS = [method for name, method in PRESETS.items() if name != "vanilla"]
"""In the order a researcher would try them: the confidence loss first (Burns et al. 2023)."""


class KnownBaseline(BaseModel):
    """The best known method the budget found, with what it tried."""

    model_config = ConfigDict(frozen=True)
    method: MethodSpec
    dev_pgr: float | None
    tried: int


def tune_known_methods(
    task: TaskSpec, trials: TrialSource, seeds: list[int], budget: int, seed: int
) -> KnownBaseline:
    """Presets in order, then variations of the best so far, `budget` methods in all; each is
    scored on every search seed (trials the agents already ran are reused, not rerun)."""
    rng = random.Random(seed)
    scored: dict[str, tuple[MethodSpec, float | None]] = {}
    queue = list(KNOWN_METHODS)
    while len(scored) < budget:
        if queue:
            method = queue.pop(0)
        else:
            best = _best(scored)
            if best is None:
                break
            method = _fresh_variation(best[0], scored, rng)
            if method is None:
                break
        own = trials.trials(task, [method], seeds, "known", f"known-{len(scored)}")
        values = [t.pgr_dev for t in own if t.pgr_dev is not None]
        mean = mean_and_se(values)[0] if len(values) == len(seeds) else None
        scored[method.method_hash] = (method, mean)
    best = _best(scored) or (KNOWN_METHODS[0], None)
    return KnownBaseline(method=best[0], dev_pgr=best[1], tried=len(scored))


def _best(
    scored: dict[str, tuple[MethodSpec, float | None]],
) -> tuple[MethodSpec, float | None] | None:
    """Highest mean dev PGR; ties go to the smaller method hash."""
    ranked = sorted(
        ((mean, method) for method, mean in scored.values() if mean is not None),
        key=lambda item: (-item[0], item[1].method_hash),
    )
    return (ranked[0][1], ranked[0][0]) if ranked else None


def _fresh_variation(
    method: MethodSpec, scored: dict[str, tuple[MethodSpec, float | None]], rng: random.Random
) -> MethodSpec | None:
    for _ in range(30):
        varied, _ = vary_method(method, rng)
        if varied.method_hash not in scored:
            return varied
    return None
