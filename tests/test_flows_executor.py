"""The study's executor: one teacher-and-ceiling preparation per (task, seed) per study, however
many batches and stages ask for that seed, whether it was first asked for as idle-time work."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context

import pytest
from prefect import flow

import flows.executor
import tasks.experiments
from flows.dispatch import Dispatcher
from flows.executor import experiment_executor
from labgap.config import StudyConfig
from labgap.methods.spec import PRESETS

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_each_task_and_seed_is_prepared_once_per_study(tiny_binary_task, monkeypatch):
    prepared, real = [], tasks.experiments._prepare

    def counted(task_spec, seed):
        prepared.append(seed)
        return real(task_spec, seed)

    monkeypatch.setattr(tasks.experiments, "_prepare", counted)

    @flow
    def three_batches():
        with experiment_executor(StudyConfig(executor="thread", workers=2)) as executor:
            return [
                executor.run(tiny_binary_task, [(PRESETS[name], s) for s in seeds], "search", print)
                for name, seeds in [("vanilla", [0, 1]), ("logconf", [0, 1]), ("vanilla", [2])]
            ]

    batches = three_batches()
    assert [[o.seed for o in batch] for batch in batches] == [[0, 1], [0, 1], [2]]
    assert sorted(prepared) == [0, 1, 2]


def test_an_idle_time_preparation_serves_the_batch_that_needs_it_and_a_withdrawn_one_is_redone(
    tiny_binary_task, monkeypatch
):
    prepared, real, holding = [], tasks.experiments._prepare, threading.Event()

    def counted(task_spec, seed):
        prepared.append(seed)
        if seed == 0:
            holding.wait(30)  # keeps the one worker busy
        return real(task_spec, seed)

    promoted, promote = threading.Event(), Dispatcher.promote

    def heard(dispatcher, started):
        promote(dispatcher, started)
        promoted.set()

    monkeypatch.setattr(tasks.experiments, "_prepare", counted)
    monkeypatch.setattr(Dispatcher, "promote", heard)
    vanilla = PRESETS["vanilla"]

    @flow
    def overlapping_batches():
        with (
            experiment_executor(StudyConfig(executor="thread", workers=1)) as executor,
            ThreadPoolExecutor(max_workers=3) as threads,
        ):

            def asked(seeds, phase, idle=False):
                runs = [(vanilla, seed) for seed in seeds]
                return threads.submit(
                    copy_context().run, executor.run, tiny_binary_task, runs, phase, print, idle
                )

            holder = asked([0], "search")
            while prepared != [0]:
                time.sleep(0.01)
            idle = asked([1, 2], "first-look", idle=True)
            time.sleep(0.3)
            assert prepared == [0]  # idle-time work waits for a free worker
            wanted = asked([1], "confirm")
            assert promoted.wait(10)  # seed 1's queued idle-time preparation is now wanted
            executor.stop_idle_work()
            assert idle.result(30) == []  # its unstarted runs were withdrawn
            holding.set()
            redone = executor.run(tiny_binary_task, [(vanilla, 2)], "confirm", print)
            return holder.result(30), wanted.result(30), redone

    holder, wanted, redone = overlapping_batches()
    assert [o.seed for o in holder + wanted + redone] == [0, 1, 2]
    assert prepared == [0, 1, 2]  # seed 1 prepared once, for the batch; seed 2's withdrawn, redone


def test_a_finished_trial_is_recorded_within_seconds_while_its_group_is_still_running(
    tiny_binary_task, monkeypatch
):
    real, release = tasks.experiments._experiment, threading.Event()

    def slow_after_the_first(task_spec, method, seed, limits):
        if seed > 0:
            release.wait(30)
        return real(task_spec, method, seed, limits)

    monkeypatch.setattr(tasks.experiments, "_experiment", slow_after_the_first)
    monkeypatch.setattr(flows.executor, "STREAM_SECONDS", 0.5)
    recorded: list[tuple[list[int], bool]] = []

    def done(outcomes):
        recorded.append(([o.seed for o in outcomes], release.is_set()))
        if len(recorded) == 1:
            release.set()  # the other three finish only once the first is recorded

    @flow
    def one_batch():
        with experiment_executor(StudyConfig(executor="thread", workers=4)) as executor:
            runs = [(PRESETS["vanilla"], seed) for seed in range(4)]
            return executor.run(tiny_binary_task, runs, "search", done)

    assert [o.seed for o in one_batch()] == [0, 1, 2, 3]
    assert recorded[0] == ([0], False)  # alone, while the rest were still running
    assert sorted(seed for seeds, _ in recorded for seed in seeds) == [0, 1, 2, 3]
