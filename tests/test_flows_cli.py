import json

from db import count_rows
from typer.testing import CliRunner

from flows.cli import app
from labgap.store.connection import Store

runner = CliRunner()


def test_experiment_records_trials_once_and_prints_the_comparison(tmp_path, tiny_binary_task):
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(tiny_binary_task.model_dump(mode="json")))
    db = tmp_path / "cli.duckdb"
    args = ["experiment", "--task", str(task_file), "--method", "vanilla", "--method", "logconf"]
    args += ["--seeds", "3", "--db", str(db)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Δ PGR vs first" in first.output and "logconf" in first.output
    with Store(db) as store:
        assert count_rows(store, "trials") == 6
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert second.output.count("(recorded)") == 6
    with Store(db) as store:
        assert count_rows(store, "trials") == 6


def test_experiment_rejects_unknown_task_and_method(tmp_path):
    result = runner.invoke(
        app, ["experiment", "--task", "nope", "--db", str(tmp_path / "x.duckdb")]
    )
    assert result.exit_code == 2 and "unknown task 'nope'" in result.output
    result = runner.invoke(
        app, ["experiment", "--method", "magic", "--db", str(tmp_path / "x.duckdb")]
    )
    assert result.exit_code == 2 and "unknown method 'magic'" in result.output


def test_tasks_lists_the_builtins():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    assert "rt-lab" in result.output and "digits-heldout" in result.output
