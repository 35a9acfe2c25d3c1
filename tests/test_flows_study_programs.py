"""A study of a method program the user brings (`candidate_method`), end to end on tiny tasks:
the program is the lab method, runs sealed in the sandbox in the worker processes, and a program
that fails on some seeds leaves recorded failures while the study goes on."""

import json
import secrets
import socket
from pathlib import Path

import duckdb
import pytest
import sklearn

from labgap.config import StudyConfig
from labgap.paths import data_dir
from labgap.programs.isolation import detect_isolation
from labgap.programs.method import make_program
from labgap.store.connection import Store

pytestmark = pytest.mark.usefixtures("prefect_harness")

PROBE = """
import os
import socket

import w2s_kit

PORT = {port}
PATHS = {paths!r}


def reached():
    found = [name for name in os.environ if "KEY" in name or "SECRET" in name]
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=1).close()
        found.append("network")
    except OSError:
        pass
    for path in PATHS:
        try:
            with open(path, "rb") as handle:
                handle.read(1)
            found.append(path)
        except OSError:
            pass
    return found


def fit_predict(data):
    found = reached()
    if found:
        raise RuntimeError("reached " + ", ".join(found))
    {fail_odd}
    model = w2s_kit.train_mlp(data.train_features, data.teacher_probs, data.recipe, data.seed)
    return model.predict_proba(data.eval_features)
"""


def tiny_config(tasks, **overrides) -> StudyConfig:
    lab, heldout, production = tasks
    settings = {
        "name": "tiny-programs",
        "lab_task": lab,
        "heldout_tasks": [heldout],
        "production_targets": [production],
        "quick_seeds": 2,
        "confirmation_seeds": 3,
        "design": "fixed",
        "scoring_budget": 2,
        "workers": 2,
    }
    return StudyConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def run_study(tasks, folder: Path, port: int, fail_odd: bool, study_id: str):
    from flows.study import replication_study

    db = folder / f"{study_id}.duckdb"
    with duckdb.connect(str(db)):
        pass  # the database file exists before the program runs: it must not be readable
    secrets = [
        str(db),
        str(Path(sklearn.__file__).parent / "datasets" / "data" / "breast_cancer.csv"),
        str(Path(__file__).parents[1] / "pyproject.toml"),
        *(str(path) for path in data_dir().rglob("*") if path.is_file()),
    ]
    source = PROBE.format(
        port=port,
        paths=secrets[:200],
        fail_odd="if data.seed % 2:\n        raise ValueError('odd seed')" if fail_odd else "",
    )
    program = make_program(source, "probe")
    config = tiny_config(tasks, study_id=study_id, candidate_method=program)
    summary = replication_study(config=config, db_path=str(db))
    return program, db, summary


@pytest.fixture(scope="module")
def program_studies(tiny_study_tasks, tmp_path_factory, listener):
    if detect_isolation().level != "full":
        pytest.skip(f"this machine cannot seal programs: {detect_isolation().detail}")
    folder = tmp_path_factory.mktemp("programs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABGAP_DATA_DIR", str(folder / "data"))
        patch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-" + secrets.token_hex(16))
        sealed = run_study(tiny_study_tasks, folder, listener, False, "sealed")
        failing = run_study(tiny_study_tasks, folder, listener, True, "failing")
        yield sealed, failing


def test_a_given_program_is_replicated_and_reaches_no_secret(program_studies):
    (program, db, summary), _ = program_studies
    assert summary.status == "completed"
    assert summary.winner_given and summary.winner_label.startswith("program probe")
    with Store(db) as store:
        assert store.query("SELECT count(*) AS n FROM failed_trials")["n"][0] == 0
        stored = store.query("SELECT program_id, source FROM method_programs")
        assert stored.rows() == [(program.program_id, program.source)]
        phases = store.query(
            "SELECT phase, count(*) AS n FROM trials WHERE method_hash = ? GROUP BY phase",
            [program.method_hash],
        )
        assert dict(phases.rows()) == {"search": 2, "confirm": 3, "transfer": 6}
        kinds = set(store.query("SELECT kind FROM gap_results")["kind"])
        assert kinds == {"lab", "target", "versus_known", "headline", "overall"}
        sandbox = store.query("SELECT sandbox FROM studies")["sandbox"][0]
        assert sandbox.startswith("full")
        assert store.query("SELECT count(*) AS n FROM agents")["n"][0] == 0
    assert summary.versus_known is not None and summary.versus_known.n == 3


def test_a_program_failing_on_some_seeds_leaves_recorded_failures_and_the_study_goes_on(
    program_studies,
):
    _, (program, db, summary) = program_studies
    assert summary.status == "completed"
    with Store(db) as store:
        failed = store.query(
            "SELECT phase, seed, error FROM failed_trials WHERE method_hash = ? ORDER BY seed",
            [program.method_hash],
        )
        assert failed.height > 0
        assert all(seed % 2 == 1 for seed in failed["seed"])
        assert all("fit_predict raised ValueError: odd seed" in e for e in failed["error"])
        pairs = store.query(
            "SELECT seed FROM transfer_trials WHERE role = 'lab_confirmation' ORDER BY seed"
        )
        assert all(seed % 2 == 0 for seed in pairs["seed"])
        lab = store.query("SELECT n FROM gap_results WHERE kind = 'lab'")["n"][0]
        assert lab == pairs.height
        detail = json.loads(store.query("SELECT config_json FROM studies")["config_json"][0])
        assert detail["candidate_method"]["program_id"] == program.program_id
