"""Every bad input is one clear line: exit status 2, no traceback, nothing written.

Command-line options, study config files, task files, local data files, method JSON and database
files, each wrong in its own way. Each case runs the real command line in-process and checks that
the database it names holds no row afterwards (or exactly the rows it held before).
"""

import json

import duckdb
import pytest

from flows.cli import invoke
from labgap.store.connection import Store
from labgap.store.schema import TABLES

TINY = {
    "name": "tiny",
    "dataset": {"source": "builtin", "name": "breast-cancer"},
    "weak_view": {"kind": "numeric", "columns": [0, 1]},
    "strong_view": {"kind": "numeric"},
    "recipe": {"hidden": 64, "epochs": 10, "batch_size": 32},
    "splits": {"weak_train": 150, "w2s_train": 250},
}


def local_task(path: str, **dataset) -> dict:
    return {
        **TINY,
        "dataset": {"source": "file", "path": path, "label_column": "y", **dataset},
        "weak_view": {"kind": "numeric"},
        "splits": {"weak_train": 10, "w2s_train": 10},
    }


FILES = {
    "broken.yaml": "n_agents: [1,\n",
    "list.yaml": "- a\n- b\n",
    "profile-list.yaml": "profile: [quick]\n",
    "profile-map.yaml": "profile: {a: 1}\n",
    "agents0.yaml": "n_agents: 0\n",
    "unknown-field.yaml": "bogus: 1\n",
    "lab-nope.yaml": "lab_task: nope\n",
    "alpha.yaml": "alpha: 0.7\n",
    "no-targets.yaml": "heldout_tasks: []\nproduction_targets: []\n",
    "lab-twice.yaml": "lab_task: rt-lab\nproduction_targets: [rt-lab]\n",
    "claude-seeds.yaml": "agent_backend: claude\nquick_seeds: 7\n",
    "claude-model.yaml": "agent_backend: claude\nclaude: {model: gpt-9}\n",
    "claude-url.yaml": "agent_backend: claude\nclaude: {base_url: 'ftp://example'}\n",
    "claude-secret-url.yaml": "claude: {base_url: 'https://me:s3cret@api.example'}\n",
    "claude.yaml": "agent_backend: claude\n",
    "task-broken.yaml": "name: [x\n",
    "task-unknown-field.json": json.dumps({**TINY, "colour": "red"}),
    "task-big-splits.json": json.dumps({**TINY, "splits": {"weak_train": 500, "w2s_train": 500}}),
    "task-zero-epochs.json": json.dumps({**TINY, "recipe": {"epochs": 0}}),
    "empty.csv": "",
    "no-label.csv": "a,b\n1,2\n3,4\n",
    "one-class.csv": "a,b,y\n" + "".join(f"{i},{i + 1},same\n" for i in range(60)),
    "data.txt": "a,b,y\n1,2,x\n",
    "notdb.duckdb": "this is not a database",
}
FILES["task-missing-csv.json"] = json.dumps(local_task("{tmp}/nothere.csv"))
FILES["task-empty-csv.json"] = json.dumps(local_task("{tmp}/empty.csv"))
FILES["task-no-label.json"] = json.dumps(local_task("{tmp}/no-label.csv"))
FILES["task-one-class.json"] = json.dumps(local_task("{tmp}/one-class.csv"))
FILES["task-txt.json"] = json.dumps(local_task("{tmp}/data.txt"))
FILES["lab-task-file-missing.yaml"] = "lab_task: {tmp}/nothere.yaml\n"
FILES["lab-task-file-bad.yaml"] = "lab_task: {tmp}/task-big-splits.json\n"

DB = ["--db", "{tmp}/study.duckdb"]
CASES = {
    # command-line options
    "unknown profile": (["run", "--profile", "nope", *DB], "profile"),
    "negative seed": (["run", "--seed", "-1", *DB], "seed"),
    "unknown backend": (["run", "--agents", "gpt", *DB], "agent_backend"),
    "zero workers": (["run", "--workers", "0", *DB], "workers"),
    "study id ..": (["run", "--study-id", "..", *DB], "study_id"),
    "study id .": (["run", "--study-id", ".", *DB], "study_id"),
    "unknown option": (["run", "--agnets", "claude", *DB], "--agnets"),
    "zero seeds": (["experiment", "--seeds", "0", *DB], "--seeds"),
    "too many seeds": (["experiment", "--seeds", "1000", *DB], "--seeds"),
    # study config files
    "missing config": (["run", "--config", "{tmp}/nothere.yaml", *DB], "nothere.yaml"),
    "config not YAML": (["run", "--config", "{tmp}/broken.yaml", *DB], "broken.yaml"),
    "config a list": (["run", "--config", "{tmp}/list.yaml", *DB], "mapping"),
    "profile a list": (["run", "--config", "{tmp}/profile-list.yaml", *DB], "profile"),
    "profile a mapping": (["run", "--config", "{tmp}/profile-map.yaml", *DB], "profile"),
    "zero agents": (["run", "--config", "{tmp}/agents0.yaml", *DB], "n_agents"),
    "unknown field": (["run", "--config", "{tmp}/unknown-field.yaml", *DB], "bogus"),
    "unknown lab task": (["run", "--config", "{tmp}/lab-nope.yaml", *DB], "lab_task"),
    "alpha too large": (["run", "--config", "{tmp}/alpha.yaml", *DB], "alpha"),
    "no targets": (["run", "--config", "{tmp}/no-targets.yaml", *DB], "target"),
    "lab task as target": (["run", "--config", "{tmp}/lab-twice.yaml", *DB], "distinct"),
    "claude seeds": (["run", "--config", "{tmp}/claude-seeds.yaml", *DB], "quick_seeds"),
    "claude unpriced": (["run", "--config", "{tmp}/claude-model.yaml", *DB], "gpt-9"),
    "claude url": (["run", "--config", "{tmp}/claude-url.yaml", *DB], "base_url"),
    "credentials in url": (["run", "--config", "{tmp}/claude-secret-url.yaml", *DB], "credentials"),
    "claude no key": (["run", "--config", "{tmp}/claude.yaml", *DB], "ANTHROPIC_API_KEY"),
    "lab task file missing": (
        ["run", "--config", "{tmp}/lab-task-file-missing.yaml", *DB],
        "nothere.yaml",
    ),
    "lab task splits too big": (
        ["run", "--config", "{tmp}/lab-task-file-bad.yaml", *DB],
        "splits",
    ),
    # task files
    "unknown task": (["experiment", "--task", "nope", *DB], "nope"),
    "task file missing": (["experiment", "--task", "{tmp}/nothere.json", *DB], "nothere.json"),
    "task file not YAML": (["experiment", "--task", "{tmp}/task-broken.yaml", *DB], "YAML"),
    "task unknown field": (
        ["experiment", "--task", "{tmp}/task-unknown-field.json", *DB],
        "colour",
    ),
    "task splits too big": (["experiment", "--task", "{tmp}/task-big-splits.json", *DB], "rows"),
    "task zero epochs": (["experiment", "--task", "{tmp}/task-zero-epochs.json", *DB], "epochs"),
    # local data files
    "data file missing": (["experiment", "--task", "{tmp}/task-missing-csv.json", *DB], "csv"),
    "data file empty": (["experiment", "--task", "{tmp}/task-empty-csv.json", *DB], "empty.csv"),
    "no label column": (["experiment", "--task", "{tmp}/task-no-label.json", *DB], "y"),
    "one class only": (["experiment", "--task", "{tmp}/task-one-class.json", *DB], "class"),
    "unknown data format": (["experiment", "--task", "{tmp}/task-txt.json", *DB], "data.txt"),
    # method JSON
    "unknown method": (["experiment", "--method", "magic", *DB], "magic"),
    "method out of range": (["experiment", "--method", '{"epochs": 0}', *DB], "epochs"),
    "method not JSON": (["experiment", "--method", "{epochs", *DB], "method JSON"),
    "method unknown field": (["experiment", "--method", '{"colour": 1}', *DB], "colour"),
    "same method twice": (
        ["experiment", "--method", "vanilla", "--method", "vanilla", *DB],
        "twice",
    ),
    # database files
    "db is a folder": (["experiment", "--db", "{tmp}"], "{tmp}"),
    "db not a database": (["report", "--db", "{tmp}/notdb.duckdb"], "notdb.duckdb"),
    "db of another schema": (["run", "--db", "{tmp}/old.duckdb"], "schema"),
    "unknown study id": (["report", "nope", "--db", "{tmp}/empty.duckdb"], "nope"),
    "no snapshot yet": (["sql", "SELECT 1", "--db", "{tmp}/study.duckdb"], "snapshot"),
}


@pytest.fixture()
def inputs(tmp_path, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    for name, text in FILES.items():
        (tmp_path / name).write_text(text.replace("{tmp}", str(tmp_path)))
    with duckdb.connect(str(tmp_path / "old.duckdb")) as old:
        old.execute(
            "CREATE TABLE schema_info (version INTEGER); INSERT INTO schema_info VALUES (0)"
        )
    Store(tmp_path / "empty.duckdb").close()
    return tmp_path


def rows_in(path) -> int:
    if not path.is_file() or path.name in {"notdb.duckdb", "old.duckdb"}:
        return 0
    with duckdb.connect(str(path), read_only=True) as connection:
        return sum(
            connection.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            for table in TABLES
            if table != "schema_info"
        )


def test_there_are_at_least_thirty_distinct_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_one_clear_line(case, inputs, capsys):
    args, named = CASES[case]
    argv = [arg.replace("{tmp}", str(inputs)) for arg in args]
    assert invoke(argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named.replace("{tmp}", str(inputs)) in lines[0], lines[0]
    assert "Traceback" not in out + err and out.strip() == ""
    assert "s3cret" not in err
    for database in inputs.glob("*.duckdb"):
        assert rows_in(database) == 0, database
    assert not list(inputs.glob("*.analysts.duckdb"))
