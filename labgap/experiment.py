"""Method comparisons on one task: run (or resume) task × method × seed trials and summarise them.

Trials already recorded for the same study, task, method and seed are read back instead of being
recomputed, so an interrupted comparison resumes and a repeated one adds no rows.
"""

from collections.abc import Callable

import numpy as np
import polars as pl
from scipy import stats

from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import Outcome, TrialResult
from labgap.methods.kinds import Method, method_label
from labgap.trials import TrialBook


def run_comparison(
    book: TrialBook,
    task: TaskSpec,
    methods: list[Method],
    seeds: list[int],
    on_trial: Callable[[Outcome, bool], None] | None = None,
) -> list[TrialResult]:
    """Every (method, seed) trial, seed-major so each seed's teacher and ceiling are reused;
    `on_trial` hears of each (a failed program's trial too) with whether it was already
    recorded. Returns the trials that succeeded."""
    results: list[TrialResult] = []
    for seed in seeds:
        for method in methods:
            reused = book.has(task, method, seed)
            done = book.trials(task, [method], [seed], "adhoc", f"seed{seed}")
            results += done
            if on_trial:
                failed = [f for f in book.failures(task, method) if f.seed == seed]
                on_trial((done or failed)[0], reused)
    return results


def summarise(results: list[TrialResult], methods: list[Method]) -> pl.DataFrame:
    """Per method that has trials: mean ± sd of weak, ceiling, PGR; paired PGR difference from
    the first, 95% CI."""
    if not results:
        return pl.DataFrame()
    frame = pl.DataFrame([r.model_dump() for r in results])
    baseline = methods[0].method_hash
    base_pgr = frame.filter(pl.col("method_hash") == baseline).select("seed", "pgr_test")
    rows = []
    for method in methods:
        own = frame.filter(pl.col("method_hash") == method.method_hash).sort("seed")
        if own.height == 0:
            continue
        paired = own.select("seed", "pgr_test").join(base_pgr, on="seed", suffix="_base")
        paired = paired.drop_nulls()
        diff = (paired["pgr_test"] - paired["pgr_test_base"]).to_numpy()
        low = high = None
        if method.method_hash != baseline and len(diff) >= 2 and np.std(diff) > 0:
            test = stats.ttest_1samp(diff, 0.0)
            interval = test.confidence_interval(0.95)
            low, high = float(interval.low), float(interval.high)
        rows.append(
            {
                "method": method_label(method),
                "seeds": own.height,
                "weak_acc": own["weak_acc_test"].mean(),
                "weak_sd": own["weak_acc_test"].std(),
                "ceiling_acc": own["ceiling_acc_test"].mean(),
                "ceiling_sd": own["ceiling_acc_test"].std(),
                "pgr_dev": own["pgr_dev"].mean(),
                "pgr_test": own["pgr_test"].mean(),
                "pgr_sd": own["pgr_test"].std(),
                "diff_vs_first": float(diff.mean()) if len(diff) else None,
                "diff_ci_low": low,
                "diff_ci_high": high,
            }
        )
    return pl.DataFrame(rows)
