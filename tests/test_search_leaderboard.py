"""The leaderboard and the winner, decided in Python from the pipeline's own search trials."""

import json

import pytest

from labgap.engine.w2s import TrialResult
from labgap.methods.spec import MethodSpec
from labgap.search.leaderboard import pick_winner, rank_methods
from labgap.search.scoring import ScoringCall


def trial(method: str, seed: int, pgr_dev: float | None) -> TrialResult:
    return TrialResult(
        task="t",
        task_hash="th",
        method_hash=method,
        method_json=json.dumps({"m": method}),
        seed=seed,
        weak_acc_dev=0.6,
        weak_acc_test=0.6,
        ceiling_acc_dev=0.8,
        ceiling_acc_test=0.8,
        student_acc_dev=0.7,
        student_acc_test=0.7,
        student_top_class_share=0.5,
        pgr_dev=pgr_dev,
        pgr_test=0.5,
        wall_seconds=1.0,
        teacher_cached=True,
        dataset_sha256="0" * 64,
    )


def call(agent: int, round: int, method: str) -> ScoringCall:
    return ScoringCall(
        agent_id=agent,
        round=round,
        method_hash=method,
        method_json="{}",
        family=f"family-{method}",
        seeds="[0, 1]",
        dev_pgr=None,
        budget_left=0,
    )


def test_methods_rank_by_mean_dev_pgr_and_too_few_seeds_rank_last():
    trials = [
        trial("a", 0, 0.2),
        trial("a", 1, 0.4),
        trial("b", 0, 0.5),
        trial("b", 1, 0.7),
        trial("c", 0, 0.9),
        trial("d", 0, 0.1),
        trial("d", 1, None),
        trial("unscored", 0, 1.0),
        trial("unscored", 1, 1.0),
    ]
    calls = [call(2, 1, "a"), call(10, 0, "a"), call(0, 0, "b"), call(1, 1, "c"), call(0, 1, "d")]
    board = rank_methods(trials, calls, min_seeds=2)
    assert board["method_hash"].to_list() == ["b", "a", "c", "d"]
    assert board["rank"].to_list() == [1, 2, 3, 4]
    assert board["min_seeds_met"].to_list() == [True, True, False, False]
    first = board.row(1, named=True)
    assert first["proposed_by"] == "2,10" and first["first_round"] == 0
    assert first["mean_dev_pgr"] == pytest.approx(0.3) and first["n_seeds"] == 2
    assert board.row(2, named=True)["se_dev_pgr"] is None
    assert pick_winner(board)["method_hash"] == "b"


def test_ties_go_to_the_smaller_hash_and_no_eligible_method_is_an_error():
    trials = [trial(m, s, 0.5) for m in ("y", "x") for s in (0, 1)]
    board = rank_methods(trials, [call(0, 0, "y"), call(1, 0, "x")], min_seeds=2)
    assert board["method_hash"].to_list() == ["x", "y"]
    with pytest.raises(ValueError, match="minimum number of seeds"):
        pick_winner(rank_methods(trials, [call(0, 0, "x")], min_seeds=3))


def test_a_method_beating_ground_truth_is_flagged_and_never_crowned():
    trials = [trial("leaky", s, 1.5) for s in (0, 1)] + [trial("honest", s, 0.6) for s in (0, 1)]
    board = rank_methods(trials, [call(0, 0, "leaky"), call(1, 0, "honest")], min_seeds=2)
    assert board["method_hash"].to_list() == ["honest", "leaky"]
    assert board["leak_suspected"].to_list() == [False, True]
    assert pick_winner(board)["method_hash"] == "honest"
    only_leaky = rank_methods(trials[:2], [call(0, 0, "leaky")], min_seeds=2)
    with pytest.raises(ValueError, match="suspected leak"):
        pick_winner(only_leaky)


def test_a_given_method_is_ranked_though_no_agent_scored_it():
    recorded = {"method_json": MethodSpec(loss="logconf").canonical_json()}
    mine = [trial("mine", s, 0.4).model_copy(update=recorded) for s in (0, 1)]
    trials = mine + [trial("vanilla", s, 0.1) for s in (0, 1)]
    board = rank_methods(trials, [], min_seeds=2, given="mine")
    assert board["method_hash"].to_list() == ["mine"]
    assert board["proposed_by"].to_list() == ["given"]
    assert board["family"].to_list() == ["logconf"]
