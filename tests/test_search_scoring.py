"""The guarded lab: agents get dev PGR of the pipeline's own trials, within their budget."""

import json
import math
import random

import duckdb
import polars as pl
import pytest
from studies import scripted_trial

from labgap.data.tasks import BUILTIN_TASKS
from labgap.engine.w2s import W2SEngine
from labgap.methods.spec import PRESETS, MethodSpec
from labgap.search.scoring import (
    PROGRAM_CPU_SECONDS_PER_CALL,
    BudgetExhausted,
    GuardedLab,
    charge_for,
    compute_ratio,
    mean_and_se,
    mean_dev_pgr,
    method_charge,
)
from labgap.trials import LocalExecutor, TrialBook

VANILLA, LOGCONF = PRESETS["vanilla"], PRESETS["logconf"]


def make_lab(task, budget=3, recorded=()):
    calls, runs = [], []
    book = TrialBook(
        LocalExecutor(W2SEngine()), [], lambda phase, batch, trials: runs.extend(trials)
    )
    lab = GuardedLab(
        task, book, lambda n: [0, 1, 2][: n or 2], budget, list(recorded), calls.extend
    )
    return lab, book, calls, runs


def test_scores_are_the_mean_dev_pgr_of_the_pipelines_own_trials(tiny_binary_task):
    lab, book, calls, _ = make_lab(tiny_binary_task)
    (call,) = lab.score(0, 0, [LOGCONF])
    trials = book.trials(tiny_binary_task, [LOGCONF], [0, 1], "search", "check")
    assert call.dev_pgr == mean_dev_pgr(trials)
    assert json.loads(call.seeds) == [0, 1] and call.budget_left == 2
    assert calls == [call]
    (three,) = lab.score(0, 1, [VANILLA], n_seeds=3)
    assert json.loads(three.seeds) == [0, 1, 2]


def test_asking_again_is_free_and_answers_the_same(tiny_binary_task):
    lab, _, calls, runs = make_lab(tiny_binary_task)
    first = lab.score(0, 0, [LOGCONF, VANILLA])
    again = lab.score(0, 0, [VANILLA, LOGCONF, VANILLA])
    assert again == [first[1], first[0], first[1]]
    assert len(calls) == 2 and len(runs) == 4  # two methods on two seeds, each run once


def test_a_method_already_scored_on_the_same_seeds_is_free_in_any_round(tiny_binary_task):
    lab, _, calls, runs = make_lab(tiny_binary_task, budget=3)
    (first,) = lab.score(0, 0, [LOGCONF])
    later = lab.score(0, 4, [LOGCONF, VANILLA])
    assert later[0] == first and later[0].round == 0  # the record, saying when it was scored
    assert later[1].round == 4 and later[1].budget_left == 1
    assert calls == [first, later[1]] and len(runs) == 4  # the free answer wrote nothing
    # Other seeds are a new question, charged; within a round, a method has one call.
    (more,) = lab.score(0, 4, [LOGCONF], n_seeds=3)
    assert (more.round, json.loads(more.seeds), more.budget_left) == (4, [0, 1, 2], 0)
    assert lab.score(0, 4, [LOGCONF]) == [first]  # the asked seeds' record wins
    assert lab.score(0, 4, [VANILLA], n_seeds=1) == [later[1]]  # the round's call, two seeds
    # Per agent: another agent asking pays for its own.
    (theirs,) = lab.score(1, 4, [LOGCONF])
    assert theirs.agent_id == 1 and theirs.budget_left == 2
    assert len(calls) == 4


def test_a_resumed_lab_answers_recorded_calls_and_counts_them(tiny_binary_task):
    first, _, calls, _ = make_lab(tiny_binary_task, budget=2)
    first.score(0, 0, [LOGCONF])
    resumed, _, new_calls, runs = make_lab(tiny_binary_task, budget=2, recorded=calls)
    assert resumed.score(0, 0, [LOGCONF]) == calls
    assert new_calls == [] and runs == []
    assert resumed.score(0, 3, [LOGCONF]) == calls  # free in a later round too
    resumed.score(0, 1, [VANILLA])
    with pytest.raises(BudgetExhausted, match="0 dev-scoring call"):
        resumed.score(0, 2, [MethodSpec(loss="bootstrap")])
    assert new_calls[0].method_hash == VANILLA.method_hash and len(new_calls) == 1


def test_a_request_over_budget_scores_nothing(tiny_binary_task):
    lab, _, calls, runs = make_lab(tiny_binary_task, budget=1)
    with pytest.raises(BudgetExhausted, match="1 dev-scoring call"):
        lab.score(0, 0, [LOGCONF, VANILLA])
    assert calls == [] and runs == []
    assert lab.score(1, 0, [LOGCONF])[0].budget_left == 0


def test_mean_and_se_agree_with_the_analyst_views_to_the_last_bit():
    connection = duckdb.connect()
    for case in range(300):
        rng = random.Random(case)
        values = [rng.uniform(-1.0, 2.0) for _ in range(rng.choice([2, 3, 5, 6]))]
        cursor = connection.cursor()
        cursor.register("sample", pl.DataFrame({"x": values}).to_arrow())
        mean, sd, n = cursor.execute(
            "SELECT avg(x), stddev_samp(x), count(x) FROM sample"
        ).fetchall()[0]
        cursor.close()
        assert mean_and_se(values) == (mean, sd / math.sqrt(n))
    assert mean_and_se([0.5]) == (0.5, None)
    assert mean_and_se([]) == (None, None)


def test_a_program_is_charged_by_the_cpu_seconds_it_used(tiny_binary_task):
    base = scripted_trial(tiny_binary_task, VANILLA, 0, 0.6, 0.8, 0.7, 0.7, 0.5, 1.0)
    trial = base.model_copy(update={"program_cpu_seconds": 5.0})
    assert charge_for([trial, trial], [], 2) == 1
    cpu = PROGRAM_CPU_SECONDS_PER_CALL * 2.5
    heavy = base.model_copy(update={"program_cpu_seconds": cpu})
    assert charge_for([heavy, heavy], [], 2) == 3
    assert charge_for([], [], 2) == 1  # at least one call


def test_a_method_spec_is_charged_its_compute_relative_to_vanilla_rounded_up():
    lab = BUILTIN_TASKS["rt-lab"]
    assert method_charge(lab, VANILLA) == 1
    assert [name for name, m in PRESETS.items() if method_charge(lab, m) > 1] == ["knn-relabel"]
    assert compute_ratio(lab, MethodSpec(epochs=100)) == pytest.approx(5.0)  # 100 / 20 epochs
    assert method_charge(lab, MethodSpec(epochs=100)) == 5
    assert method_charge(lab, MethodSpec(self_training_rounds=2)) == 3
    assert method_charge(lab, MethodSpec(epochs=21)) == 1  # 1.05x: within the tolerance
    assert method_charge(lab, MethodSpec(epochs=23)) == 2  # 1.15x
    assert method_charge(lab, PRESETS["knn-relabel"]) == 2  # kNN: ~0.2x vanilla a round
    heaviest = MethodSpec(
        epochs=100, hidden=1024, batch_size=32, self_training_rounds=2, knn_k=50, knn_mix=0.5
    )
    assert 55 <= method_charge(lab, heaviest) <= 65  # ~60x measured
    fixed = BUILTIN_TASKS["rt-long-recipe"]  # its recipe wins over the method's settings
    assert method_charge(fixed, MethodSpec(epochs=100, hidden=1024)) == 1


def test_a_heavy_method_is_charged_its_ratio_and_the_budget_shows_it(tiny_binary_task):
    heavy = MethodSpec(epochs=30)  # the task's recipe trains 10 epochs: 3x vanilla
    lab, _, calls, runs = make_lab(tiny_binary_task, budget=4)
    assert lab.charge(heavy) == 3 and lab.charge(VANILLA) == 1
    (call,) = lab.score(0, 0, [heavy])
    assert (call.charge, call.budget_left) == (3, 1) and call.dev_pgr is not None
    assert len(runs) == 2 and calls == [call]


def test_a_method_whose_charge_exceeds_the_budget_left_is_refused_without_running(
    tiny_binary_task,
):
    lab, _, calls, runs = make_lab(tiny_binary_task, budget=2)
    heavy = MethodSpec(epochs=50)
    refusal = (
        r"2 dev-scoring call\(s\) left, 1 new method\(s\) asked costing 5; "
        r"xent epochs=50 costs 5 \(estimated compute 5.0x vanilla's\)"
    )
    with pytest.raises(BudgetExhausted, match=refusal):
        lab.score(0, 0, [heavy])
    with pytest.raises(BudgetExhausted, match="costing 6"):
        lab.score(0, 0, [VANILLA, heavy])  # refused whole
    assert calls == [] and runs == []
    assert lab.score(0, 0, [VANILLA])[0].budget_left == 1
