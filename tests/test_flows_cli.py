import json

from db import count_rows
from typer.testing import CliRunner

from flows import cli
from flows.cli import app
from labgap.reporting.data import load_report_data
from labgap.reporting.summary import study_summary
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


def test_sql_queries_the_snapshot_that_experiment_publishes(tmp_path, tiny_binary_task):
    task_file = tmp_path / "task.json"
    task_file.write_text(json.dumps(tiny_binary_task.model_dump(mode="json")))
    db = tmp_path / "cli.duckdb"
    args = ["experiment", "--task", str(task_file), "--method", "vanilla", "--method", "logconf"]
    ran = runner.invoke(app, [*args, "--seeds", "2", "--db", str(db)])
    assert ran.exit_code == 0, ran.output
    query = "SELECT phase, count(*) AS n, count(pgr_test) AS scored FROM trials GROUP BY phase"
    with Store(db):  # the writer's file may be held: analysts read their own copy
        as_csv = runner.invoke(app, ["sql", query, "--csv", "--db", str(db)])
        board = "SELECT rank, method_hash, mean_dev_pgr, leak_suspected FROM leaderboard"
        as_table = runner.invoke(app, ["sql", board, "--db", str(db)])
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.stdout == "phase,n,scored\nadhoc,4,4\n"
    assert as_table.exit_code == 0, as_table.output
    assert "mean_dev_pgr" in as_table.stdout and "0 row(s)" in as_table.stdout


def test_sql_errors_are_one_line_with_status_2(tmp_path):
    db = tmp_path / "s.duckdb"
    missing = runner.invoke(app, ["sql", "SELECT 1", "--db", str(db)])
    assert missing.exit_code == 2
    assert missing.stderr.startswith("error: no analysts' snapshot at ")
    assert "run one first" in missing.stderr and missing.stderr.count("\n") == 1
    with Store(db) as store:
        store.snapshots.stage_recorded()
    for query, message in [
        ("SELECT * FROM trial", 'Table with name trial does not exist! Did you mean "trials"?'),
        ("SELEC 1", 'Parser Error: syntax error at or near "SELEC"'),
        ("DELETE FROM trials", "read-only mode"),
        (f"ATTACH '{db}' AS writer", "file system operations are disabled"),
    ]:
        result = runner.invoke(app, ["sql", query, "--db", str(db)])
        assert result.exit_code == 2, result.output
        assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert "Traceback" not in result.output


def printed_summary(summary) -> str:
    with cli.console.capture() as captured:
        cli.print_summary(summary)
    return captured.get()


def test_the_run_summary_prints_both_headline_verdicts_and_each_tasks_seeds(report_studies):
    with Store(report_studies.db) as store:
        data = load_report_data(store, report_studies.second)
    text = printed_summary(study_summary(data))
    lines = text.splitlines()
    assert "generalisation (held-out tasks): failed_to_replicate" in lines
    assert "production transfer (production targets): replicated" in lines
    for reason in data.headline("production").reasons:
        assert f"  {reason}" in lines
    assert "both questions together: failed_to_replicate (replicated only if both are" in text
    assert "overall verdict" not in text
    for row in data.gaps_of("target"):
        line = next(ln for ln in lines if f" {row.target} " in ln)
        assert f" {row.n} ({row.stop_reason}) " in line and row.stop_reason == "decided"
    assert f"seeds {data.lab.n} ({data.lab.stop_reason})" in text
    assert "95% intervals are repeated confidence intervals over the planned looks" in text


def test_production_that_failed_never_prints_as_replicated(report_studies):
    """Held-out tasks replicated, the production target did not: no line a reader could take
    for production says replicated."""
    with Store(report_studies.db) as store:
        summary = study_summary(load_report_data(store, report_studies.second))
    swapped = summary.model_copy(
        update={
            "generalisation_verdict": "replicated",
            "generalisation_reasons": ["replicated: every target replicated"],
            "production_verdict": "failed_to_replicate",
            "production_reasons": ["failed_to_replicate: at least one target keeps too little"],
            "overall_verdict": "failed_to_replicate",
            "targets": [
                t.model_copy(
                    update={
                        "verdict": "failed_to_replicate" if t.role == "production" else "replicated"
                    }
                )
                for t in summary.targets
            ],
        }
    )
    text = printed_summary(swapped)
    lines = text.splitlines()
    assert "production transfer (production targets): failed_to_replicate" in lines
    assert "generalisation (held-out tasks): replicated" in lines
    says_replicated = [ln for ln in lines if "replicated" in ln.replace("replicated only if", "")]
    assert len(says_replicated) == 3
    assert says_replicated[0].startswith("│ tiny-multiclass │ heldout ")  # the table
    assert says_replicated[1:] == [
        "generalisation (held-out tasks): replicated",
        "  replicated: every target replicated",
    ]
    assert "overall" not in text
