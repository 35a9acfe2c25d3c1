import numpy as np
import pytest

from labgap.data.tasks import BUILTIN_TASKS, SplitSizes, resolve_task, split_indices
from labgap.errors import LabgapInputError


def test_builtin_tasks_are_the_documented_ones():
    assert set(BUILTIN_TASKS) == {
        "rt-lab",
        "rt-long-recipe",
        "rt-noisy-teacher",
        "bbc-heldout",
        "digits-heldout",
    }
    assert BUILTIN_TASKS["rt-lab"].splits == SplitSizes(weak_train=4000, w2s_train=6000)
    assert BUILTIN_TASKS["rt-long-recipe"].recipe.epochs == 60
    assert BUILTIN_TASKS["rt-noisy-teacher"].weak_model.label_noise == 0.2


def test_splits_are_disjoint_and_seeded(tiny_binary_task):
    splits = split_indices(tiny_binary_task, 569, seed=1)
    rows = np.concatenate(list(splits.values()))
    assert len(rows) == len(set(rows.tolist())) == 569
    assert len(splits["weak_train"]) == 150 and len(splits["dev"]) == 84
    again = split_indices(tiny_binary_task, 569, seed=1)
    assert all((again[k] == splits[k]).all() for k in splits)


def test_split_that_does_not_fit_is_a_clear_error(tiny_binary_task):
    too_big = tiny_binary_task.model_copy(
        update={"splits": SplitSizes(weak_train=400, w2s_train=400)}
    )
    with pytest.raises(LabgapInputError, match="tiny-binary.*dataset has 569"):
        split_indices(too_big, 569, seed=0)


def test_task_hash_ignores_description_only(tiny_binary_task):
    described = tiny_binary_task.model_copy(update={"description": "other words"})
    assert described.task_hash == tiny_binary_task.task_hash
    renamed = tiny_binary_task.model_copy(update={"name": "other"})
    assert renamed.task_hash != tiny_binary_task.task_hash


def test_task_file(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text(
        "name: my-task\n"
        "dataset: {source: builtin, name: breast-cancer}\n"
        "weak_view: {kind: numeric, columns: [0]}\n"
        "strong_view: {kind: numeric}\n"
        "splits: {weak_train: 100, w2s_train: 200}\n"
    )
    assert resolve_task(str(path)).name == "my-task"
    path.write_text("name: my-task\nweak_view: {kind: tfidf, max_features: 0}\n")
    with pytest.raises(LabgapInputError) as error:
        resolve_task(str(path))
    message = str(error.value)
    assert message.startswith(f"task file {path}: ") and "\n" not in message
    for field in ("dataset", "strong_view", "splits", "weak_view.tfidf.max_features"):
        assert f"{field}: " in message


def test_unknown_task_lists_the_builtins():
    with pytest.raises(LabgapInputError, match="rt-lab"):
        resolve_task("nope")
