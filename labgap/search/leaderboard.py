"""The leaderboard and the winner: decided here, once, from the pipeline's own search trials.

The `leaderboard` view in DuckDB shows analysts the same numbers (a test holds them equal); it
decides nothing.
"""

import polars as pl

from labgap.engine.w2s import TrialResult
from labgap.methods.kinds import family_of
from labgap.search.hacking import IMPLAUSIBLE_PGR
from labgap.search.scoring import ScoringCall, mean_and_se

LEADERBOARD_SCHEMA = {
    "rank": pl.Int64,
    "method_hash": pl.String,
    "method_json": pl.String,
    "family": pl.String,
    "n_seeds": pl.Int64,
    "mean_dev_pgr": pl.Float64,
    "se_dev_pgr": pl.Float64,
    "proposed_by": pl.String,
    "first_round": pl.Int64,
    "min_seeds_met": pl.Boolean,
    "leak_suspected": pl.Boolean,
}


def rank_methods(
    search_trials: list[TrialResult],
    calls: list[ScoringCall],
    min_seeds: int,
    given: str | None = None,
) -> pl.DataFrame:
    """Every scored method by mean dev PGR over its search trials, best first.

    Methods measured on fewer than `min_seeds` seeds rank below all others (`min_seeds_met`
    false) and cannot win, as cannot one whose mean dev PGR beats ground truth by more than noise
    explains (`leak_suspected`: it has seen labels); ties go to the smaller method hash. `given` is the hash of a method
    the user named instead of a search: it is ranked though no agent scored it.
    """
    by_method: dict[str, list[TrialResult]] = {}
    for trial in search_trials:
        if trial.pgr_dev is not None:
            by_method.setdefault(trial.method_hash, []).append(trial)
    proposers: dict[str, list[ScoringCall]] = {}
    for call in calls:
        proposers.setdefault(call.method_hash, []).append(call)
    rows = []
    for method_hash, trials in by_method.items():
        scored = proposers.get(method_hash, [])
        if not scored and method_hash != given:
            continue
        mean, se = mean_and_se([t.pgr_dev for t in sorted(trials, key=lambda t: t.seed)])
        rows.append(
            {
                "method_hash": method_hash,
                "method_json": trials[0].method_json,
                "family": scored[0].family if scored else family_of(trials[0].method_json),
                "n_seeds": len(trials),
                "mean_dev_pgr": mean,
                "se_dev_pgr": se,
                "proposed_by": ",".join(str(a) for a in sorted({c.agent_id for c in scored}))
                or "given",
                "first_round": min((c.round for c in scored), default=0),
                "min_seeds_met": len(trials) >= min_seeds,
                "leak_suspected": mean > IMPLAUSIBLE_PGR,
            }
        )
    rows.sort(
        key=lambda r: (
            not r["min_seeds_met"],
            r["leak_suspected"],
            -r["mean_dev_pgr"],
            r["method_hash"],
        )
    )
    ranked = [{"rank": index, **row} for index, row in enumerate(rows, start=1)]
    return pl.DataFrame(ranked, schema=LEADERBOARD_SCHEMA)


def pick_winner(board: pl.DataFrame) -> dict:
    """The best mean dev PGR among the eligible methods (see `eligible`)."""
    candidates = eligible(board)
    if candidates.height == 0:
        raise ValueError(
            "no method reached the minimum number of seeds without a suspected leak; nothing to "
            "confirm"
        )
    return candidates.row(0, named=True)


def eligible(board: pl.DataFrame) -> pl.DataFrame:
    """Methods that may win: scored on the minimum seeds, and no suspected label leak."""
    return board.filter(pl.col("min_seeds_met") & ~pl.col("leak_suspected"))
