"""Guarded scoring: the pipeline, not the agent, owns ground truth and every number.

Agents only ever receive the mean dev-split PGR of a method the pipeline itself ran, within a
per-agent budget of scoring calls, and every call is recorded. The leaderboard and the winner are
computed from the pipeline's own trials, never from anything an agent reports. (The public
reference code returned exact correct-counts, answered for the training split and trusted
agent-reported numbers; this module exists so none of that can happen here.)
"""

import json
import math

import polars as pl
from pydantic import BaseModel, ConfigDict

from labgap.methods import MethodSpec
from labgap.store import Store
from labgap.w2s import TrialResult


class ScoringCall(BaseModel):
    """One answered query: what an agent asked about and the only number it got back."""

    model_config = ConfigDict(frozen=True)

    agent_id: int
    round: int
    method_hash: str
    method_json: str
    family: str
    seeds: str
    dev_pgr: float | None
    budget_left: int


class BudgetExhausted(Exception):
    """The agent has used its dev-scoring budget; it stops proposing (recorded, not an error)."""


class GuardedScorer:
    def __init__(self, budget: int, used: dict[int, int] | None = None):
        self.budget = budget
        self.used: dict[int, int] = dict(used or {})

    def budget_left(self, agent_id: int) -> int:
        return self.budget - self.used.get(agent_id, 0)

    def score(
        self, agent_id: int, round_index: int, method: MethodSpec, trials: list[TrialResult]
    ) -> ScoringCall:
        """The mean dev PGR over the pipeline's own trials of `method` (None if undefined)."""
        if self.budget_left(agent_id) <= 0:
            raise BudgetExhausted(f"agent {agent_id} has used its {self.budget} scoring calls")
        if not trials or any(t.method_hash != method.method_hash for t in trials):
            raise ValueError("scoring needs the pipeline's own trials of exactly this method")
        self.used[agent_id] = self.used.get(agent_id, 0) + 1
        values = [t.pgr_dev for t in trials if t.pgr_dev is not None]
        return ScoringCall(
            agent_id=agent_id,
            round=round_index,
            method_hash=method.method_hash,
            method_json=method.canonical_json(),
            family=method.family,
            seeds=json.dumps(sorted(t.seed for t in trials)),
            dev_pgr=sum(values) / len(values) if values else None,
            budget_left=self.budget_left(agent_id),
        )


def read_leaderboard(store: Store, study_id: str) -> pl.DataFrame:
    """The `leaderboard` view for one study: the pipeline's own trials, ranked."""
    return store.query("SELECT * FROM leaderboard WHERE study_id = ? ORDER BY rank", [study_id])


def pick_winner(board: pl.DataFrame) -> dict:
    """The best mean dev PGR among methods scored on at least the minimum seeds."""
    eligible = board.filter(pl.col("min_seeds_met"))
    if eligible.height == 0:
        raise ValueError("no method reached the minimum number of seeds; nothing to confirm")
    return eligible.row(0, named=True)


class HackingFlags(BaseModel):
    """Signs a winning method games the score rather than learning from the teacher."""

    flags: list[str]
    reasons: list[str]


def reward_hacking_flags(
    winner_dev_pgr: float,
    naive_effect: float,
    fresh_effect: float | None,
    top_class_share: float,
    baseline_top_class_share: float,
) -> HackingFlags:
    """Checks on the pipeline's own numbers: dev far above fresh test, or a collapsed student."""
    flags, reasons = [], []
    if fresh_effect is not None and naive_effect - fresh_effect > 0.2:
        flags.append("dev_much_above_test")
        reasons.append(
            f"the search promised +{naive_effect:.3f} PGR over vanilla on dev; fresh test seeds "
            f"gave {fresh_effect:+.3f}"
        )
    if top_class_share > 0.95 and top_class_share - baseline_top_class_share > 0.1:
        flags.append("predicts_one_class")
        reasons.append(
            f"the winner puts {top_class_share:.0%} of test predictions in one class "
            f"(vanilla: {baseline_top_class_share:.0%}): it may ignore the teacher"
        )
    if not math.isfinite(winner_dev_pgr) or winner_dev_pgr > 1.2:
        flags.append("implausible_dev_pgr")
        reasons.append(f"dev PGR {winner_dev_pgr:.3f} exceeds what ground truth gives")
    return HackingFlags(flags=flags, reasons=reasons)
