"""The trial book: each (task, method, seed) runs once per study, recorded before it is used."""

from labgap.engine.w2s import W2SEngine
from labgap.methods.spec import PRESETS
from labgap.trials import LocalExecutor, RecordedTrial, TrialBook

VANILLA, LOGCONF = PRESETS["vanilla"], PRESETS["logconf"]


class CountingExecutor(LocalExecutor):
    def __init__(self):
        super().__init__(W2SEngine())
        self.batches: list[list[tuple[str, int]]] = []

    def run(self, task, runs, phase):
        self.batches.append([(method.method_hash, seed) for method, seed in runs])
        return super().run(task, runs, phase)


def test_missing_trials_run_once_as_one_batch_and_are_handed_over_first(tiny_binary_task):
    executor, handed = CountingExecutor(), []
    book = TrialBook(
        executor, [], lambda phase, batch, trials: handed.append((phase, batch, trials))
    )
    first = book.trials(tiny_binary_task, [VANILLA, LOGCONF], [0, 1], "search", "round0")
    assert [(t.method_hash, t.seed) for t in first] == [
        (VANILLA.method_hash, 0),
        (VANILLA.method_hash, 1),
        (LOGCONF.method_hash, 0),
        (LOGCONF.method_hash, 1),
    ]
    again = book.trials(tiny_binary_task, [LOGCONF, VANILLA], [1, 2], "confirm", "fresh")
    assert executor.batches[1] == [(LOGCONF.method_hash, 2), (VANILLA.method_hash, 2)]
    assert [phase for phase, _, _ in handed] == ["search", "confirm"]
    assert len(handed[1][2]) == 2
    assert again[0] == first[3]
    assert book.has(tiny_binary_task, LOGCONF, 2)
    assert {t.seed for t in book.of_phase(tiny_binary_task, "search")} == {0, 1}
    assert {t.seed for t in book.of_phase(tiny_binary_task, "confirm")} == {2}


def test_recorded_trials_are_served_without_running(tiny_binary_task):
    trial = W2SEngine().run(tiny_binary_task, VANILLA, 0)
    executor, handed = CountingExecutor(), []
    book = TrialBook(
        executor,
        [RecordedTrial(phase="search", trial=trial)],
        lambda *args: handed.append(args),
    )
    assert book.trials(tiny_binary_task, [VANILLA], [0], "search", "b") == [trial]
    assert executor.batches == [] and handed == []
