"""Ad-hoc method comparisons: seed-major trials through the trial book, and their summary."""

from labgap.engine.w2s import W2SEngine
from labgap.experiment import method_label, run_comparison, summarise
from labgap.methods.spec import PRESETS, MethodSpec
from labgap.trials import LocalExecutor, TrialBook


def test_trials_run_seed_major_once_and_the_summary_pairs_them(tiny_binary_task):
    methods = [PRESETS["vanilla"], PRESETS["logconf"]]
    recorded, heard = [], []
    book = TrialBook(
        LocalExecutor(W2SEngine()), [], lambda phase, batch, trials: recorded.extend(trials)
    )
    results = run_comparison(
        book, tiny_binary_task, methods, [0, 1, 2], lambda r, reused: heard.append(reused)
    )
    assert [(r.seed, r.method_hash) for r in results[:2]] == [
        (0, methods[0].method_hash),
        (0, methods[1].method_hash),
    ]
    assert len(recorded) == 6 and heard == [False] * 6
    again = run_comparison(
        book, tiny_binary_task, methods, [0, 1, 2], lambda r, reused: heard.append(reused)
    )
    assert again == results and heard[6:] == [True] * 6
    summary = summarise(results, methods)
    assert summary["method"].to_list() == ["vanilla", "logconf"]
    assert summary["seeds"].to_list() == [3, 3]
    logconf = summary.row(1, named=True)
    assert logconf["diff_ci_low"] <= logconf["diff_vs_first"] <= logconf["diff_ci_high"]
    assert summary.row(0, named=True)["diff_ci_low"] is None


def test_a_method_without_a_preset_is_labelled_by_its_hash():
    method = MethodSpec(epochs=7)
    assert method_label(method) == method.method_hash
    assert method_label(PRESETS["logconf"]) == "logconf"
