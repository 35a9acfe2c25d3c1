"""The trial book: each (task, method, seed) runs once per study, recorded before it is used."""

import pytest

from labgap.engine.w2s import TrialFailure, TrialLimits, W2SEngine
from labgap.methods.spec import PRESETS
from labgap.trials import LocalExecutor, RecordedTrial, TrialBook

VANILLA, LOGCONF = PRESETS["vanilla"], PRESETS["logconf"]


class CountingExecutor(LocalExecutor):
    def __init__(self, limits: TrialLimits | None = None):
        super().__init__(W2SEngine(), limits)
        self.batches: list[list[tuple[str, int]]] = []

    def run(self, task, runs, phase, done, idle=False):
        self.batches.append([(method.method_hash, seed) for method, seed in runs])
        return super().run(task, runs, phase, done, idle)


def test_missing_trials_run_once_as_one_batch_and_are_handed_over_as_they_complete(
    tiny_binary_task,
):
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
    assert [phase for phase, _, _ in handed] == ["search"] * 4 + ["confirm"] * 2
    assert all(len(outcomes) == 1 for _, _, outcomes in handed)
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


class InterruptedExecutor(LocalExecutor):
    """Finishes `finish` trials of a batch, then is killed (Ctrl-C) while the rest are in flight."""

    def __init__(self, finish: int):
        super().__init__(W2SEngine())
        self.finish = finish

    def run(self, task, runs, phase, done, idle=False):
        for method, seed in runs[: self.finish]:
            done([self.engine.run(task, method, seed)])
        raise KeyboardInterrupt


def test_a_kill_in_the_middle_of_a_batch_keeps_the_trials_that_had_completed(tiny_binary_task):
    handed = []
    book = TrialBook(InterruptedExecutor(finish=3), [], lambda *args: handed.append(args))
    with pytest.raises(KeyboardInterrupt):
        book.trials(tiny_binary_task, [VANILLA, LOGCONF], [0, 1], "search", "round0")
    assert sum(len(outcomes) for _, _, outcomes in handed) == 3
    recorded = [RecordedTrial(phase="search", trial=t) for _, _, ts in handed for t in ts]
    executor = CountingExecutor()
    resumed = TrialBook(executor, recorded, lambda *args: None)
    resumed.trials(tiny_binary_task, [VANILLA, LOGCONF], [0, 1], "search", "round0")
    assert executor.batches == [[(LOGCONF.method_hash, 1)]]  # only the trial in flight


def test_a_timed_out_trial_is_recorded_as_failed_and_never_run_again(tiny_binary_task):
    executor, handed = CountingExecutor(TrialLimits(timeout_seconds=0.001)), []
    book = TrialBook(executor, [], lambda phase, batch, outcomes: handed.extend(outcomes))
    assert book.trials(tiny_binary_task, [VANILLA], [0], "search", "b") == []
    (failure,) = book.failures(tiny_binary_task, VANILLA)
    assert isinstance(failure, TrialFailure) and "0.001 s trial timeout" in failure.error
    assert handed == [failure] and book.has(tiny_binary_task, VANILLA, 0)
    assert book.trials(tiny_binary_task, [VANILLA], [0], "confirm", "again") == []
    assert len(executor.batches) == 1
    resumed_executor = CountingExecutor()  # a resumed study: the recorded failure is known
    resumed = TrialBook(resumed_executor, [], lambda *args: None, failed=[failure])
    assert resumed.trials(tiny_binary_task, [VANILLA], [0], "search", "b") == []
    assert resumed_executor.batches == []


def test_trials_run_when_idle_are_served_to_the_stage_that_asks_later(tiny_binary_task):
    """Run ahead (as the first look's baseline during the search), labelled as the stage will
    label them, and not counted in the progress until that stage asks."""
    executor, handed, progress = CountingExecutor(), [], []
    book = TrialBook(
        executor,
        [],
        lambda phase, batch, outcomes: handed.append((phase, batch, len(outcomes))),
        lambda task, ran, reused: progress.append((ran, reused)),
    )
    book.run_when_idle(tiny_binary_task, [VANILLA], [5, 6], "transfer", "transfer-tiny-look1")
    assert progress == [] and handed == [("transfer", "transfer-tiny-look1", 1)] * 2
    later = book.trials(tiny_binary_task, [VANILLA, LOGCONF], [5, 6], "transfer", "t-look1")
    assert [t.seed for t in later] == [5, 6, 5, 6]
    assert executor.batches[-1] == [(LOGCONF.method_hash, 5), (LOGCONF.method_hash, 6)]
    assert progress == [(2, 2)]
