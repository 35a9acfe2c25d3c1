"""The study's executor: one teacher-and-ceiling preparation per (task, seed) per study, however
many batches and stages ask for that seed."""

import pytest
from prefect import flow

import tasks.experiments
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
