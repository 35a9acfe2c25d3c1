"""The analysts' snapshot, with real processes: readers never block the study, always see a whole,
consistent database that only grows, and a publication killed at any moment leaves the previous
copy intact."""

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from labgap.store.connection import Store
from labgap.store.schema import SCHEMA_VERSION, TABLES, VIEWS
from labgap.store.snapshot import analysts_path, publish_snapshot

SPAWN = multiprocessing.get_context("spawn")

CONSISTENCY = {
    "rows_without_study": """
        SELECT count(*) FROM (
            SELECT study_id FROM tasks UNION ALL SELECT study_id FROM agents
            UNION ALL SELECT study_id FROM trials UNION ALL SELECT study_id FROM scoring_calls
            UNION ALL SELECT study_id FROM forum_posts UNION ALL SELECT study_id FROM transfer_trials
            UNION ALL SELECT study_id FROM gap_results
        ) WHERE study_id NOT IN (SELECT study_id FROM studies)""",
    "trials_before_their_task": """
        SELECT count(*) FROM trials t ANTI JOIN tasks USING (study_id, task_hash)""",
    "scores_without_trials": """
        SELECT count(*) FROM scoring_calls c
        ANTI JOIN trials t ON t.study_id = c.study_id AND t.method_hash = c.method_hash""",
    "transfer_before_search_end": """
        SELECT count(*) FROM transfer_trials t ANTI JOIN (
            SELECT study_id FROM quality_checks WHERE stage = 'leaderboard'
        ) USING (study_id)""",
    "gap_before_transfer": """
        SELECT count(*) FROM gap_results ANTI JOIN transfer_trials USING (study_id)""",
    "completed_without_gap": """
        SELECT count(*) FROM studies ANTI JOIN gap_results USING (study_id)
        WHERE status = 'completed'""",
}
"""Each counts rows that could only be seen in a torn copy: rows of a later stage without the
earlier stage's rows the study wrote before them."""


def read_state(connection: duckdb.DuckDBPyConnection) -> dict:
    """Every table's row count, every view readable, and the consistency checks: one snapshot."""
    state = {t: connection.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    for view in VIEWS:
        connection.execute(f"SELECT * FROM {view}").fetchall()
    state["torn"] = [
        name for name, sql in CONSISTENCY.items() if connection.execute(sql).fetchall()[0][0]
    ]
    state["status"] = [s for (s,) in connection.execute("SELECT status FROM studies").fetchall()]
    return state


def hold_snapshot(path: str, stop, results) -> None:
    """An analyst with a notebook open on the analysts' file for the whole study."""
    try:
        connection = duckdb.connect(path, read_only=True)
        results.put("holding")
        states = []
        while not stop.is_set():
            states.append(read_state(connection))
            time.sleep(0.3)
        connection.close()
        results.put(states)
    except Exception as error:  # reported to the test, which fails with it
        results.put(f"{type(error).__name__}: {error}")


def poll_snapshot(path: str, stop, results, seed: int) -> None:
    """An analyst opening the analysts' file at random moments, and once more after the study."""
    rng = random.Random(seed)
    try:
        states = []
        while True:
            done = stop.wait(rng.uniform(0.0, 0.6))
            connection = duckdb.connect(path, read_only=True)
            states.append(read_state(connection))
            connection.close()
            if done:
                break
        results.put(states)
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")


def get(results) -> list | str:
    answer = results.get(timeout=120)
    assert not isinstance(answer, str), answer
    return answer


@pytest.fixture(scope="module")
def watched_study(tmp_path_factory, tiny_study_tasks):
    """A small study run by `labgap run` in its own process while two analysts read its snapshot."""
    folder = tmp_path_factory.mktemp("watched")
    lab, heldout, production = (task.model_dump(mode="json") for task in tiny_study_tasks)
    config = folder / "study.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "watched",
                "seed": 3,
                "lab_task": lab,
                "heldout_tasks": [heldout],
                "production_targets": [production],
                "n_agents": 2,
                "rounds": 1,
                "quick_seeds": 2,
                "confirmation_seeds": 3,
                "design": "fixed",
                "workers": 1,
                "executor": "thread",
            }
        )
    )
    db = folder / "study.duckdb"
    with Store(db) as store:
        store.snapshots.stage_recorded()  # the empty database the first analyst opens
    snapshot = str(analysts_path(db))
    stop, held, polled = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    holder = SPAWN.Process(target=hold_snapshot, args=(snapshot, stop, held))
    poller = SPAWN.Process(target=poll_snapshot, args=(snapshot, stop, polled, 11))
    holder.start()
    assert held.get(timeout=60) == "holding"
    poller.start()
    env = {
        **os.environ,
        "LABGAP_DATA_DIR": str(folder / "data"),
        "PREFECT_HOME": str(folder / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    labgap = Path(sys.executable).with_name("labgap")
    study = subprocess.run(
        [str(labgap), "run", "--config", str(config), "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    stop.set()
    holder_states, poller_states = get(held), get(polled)
    holder.join(30)
    poller.join(30)
    with duckdb.connect(str(db), read_only=True) as writer:
        final = read_state(writer)
    return study, holder_states, poller_states, final


@pytest.mark.slow
def test_an_analyst_holding_the_snapshot_does_not_block_the_study(watched_study):
    study, holder_states, _, final = watched_study
    assert study.returncode == 0, study.stdout[-3000:] + study.stderr[-3000:]
    assert "production transfer (production targets): " in study.stdout
    assert final["status"] == ["completed"]
    # The analyst read throughout, from the copy it opened (replaced under it, never changed).
    assert len(holder_states) >= 20
    assert all(state == holder_states[0] for state in holder_states)


@pytest.mark.slow
def test_analysts_reading_during_a_study_see_consistent_growing_copies(watched_study):
    study, _, states, final = watched_study
    assert study.returncode == 0, study.stderr[-3000:]
    assert len(states) >= 20
    assert [s["torn"] for s in states if s["torn"]] == []
    for before, after in zip(states, states[1:], strict=False):
        assert all(after[t] >= before[t] for t in TABLES), (before, after)
    assert len({tuple(s[t] for t in TABLES) for s in states}) >= 4  # seen growing, stage by stage
    assert states[-1] == final  # at the end: every stage's rows, the study completed
    assert all(
        final[t] > 0
        for t in TABLES
        if t not in ("agent_messages", "llm_calls", "failed_trials", "method_programs")
    )


def publish_forever(db: str, published) -> None:
    with Store(db) as store:
        while True:
            publish_snapshot(store.connection, store.snapshots.target)
            published.set()


@pytest.fixture(scope="module")
def large_db(tmp_path_factory) -> tuple[Path, dict]:
    """A few MB of rows, so that a publication takes long enough to be killed in its middle."""
    db = tmp_path_factory.mktemp("kill") / "big.duckdb"
    n = 60_000
    checks = pl.DataFrame(
        {
            "study_id": [f"s{i % 40}" for i in range(n)],
            "stage": "trials",
            "batch": [f"b{i}" for i in range(n)],
            "expectation": "expect_column_values_to_be_between",
            "column_name": "pgr_dev",
            "critical": True,
            "success": True,
            "element_count": list(range(n)),
            "unexpected_count": 0,
            "detail": "ok " * 20,
        }
    )
    with Store(db) as store:
        store.insert("quality_checks", checks)
        expected = read_state(store.connection)
    return db, expected


def test_a_publication_killed_at_any_moment_leaves_a_whole_copy(large_db):
    db, expected = large_db
    target = analysts_path(db)
    temporary = target.with_name(f"{target.name}.tmp")
    rng = random.Random(5)
    killed_mid_copy = 0
    for _ in range(6):
        published = SPAWN.Event()
        publisher = SPAWN.Process(target=publish_forever, args=(str(db), published))
        publisher.start()
        assert published.wait(60)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(publisher.pid, signal.SIGKILL)
        publisher.join(10)
        assert publisher.exitcode == -signal.SIGKILL
        killed_mid_copy += temporary.exists()
        with duckdb.connect(str(target), read_only=True) as analyst:
            assert read_state(analyst) == expected
            for table in TABLES:
                analyst.execute(f"SELECT * FROM {table}").fetchall()  # every block readable
    assert killed_mid_copy >= 1  # some kill did land inside a publication
    with Store(db) as store:
        publish_snapshot(store.connection, target)
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "big.analysts.duckdb",
        "big.duckdb",
    ]


def test_the_snapshot_is_derived_from_the_writers_path():
    assert analysts_path("data/labgap.duckdb") == Path("data/labgap.analysts.duckdb")
    assert analysts_path("/x/y/study") == Path("/x/y/study.analysts")


def test_a_copy_holds_committed_rows_only_with_keys_and_views(tmp_path):
    with Store(tmp_path / "w.duckdb") as store:
        store.insert("studies", _study_row("done"))
        writing = store.connection.cursor()
        writing.execute("BEGIN TRANSACTION")
        writing.execute("INSERT INTO schema_info VALUES (99)")
        publish_snapshot(store.connection, store.snapshots.target)
        writing.execute("ROLLBACK")
        with duckdb.connect(str(store.snapshots.target), read_only=True) as analyst:
            assert analyst.execute("SELECT version FROM schema_info").fetchall() == [
                (SCHEMA_VERSION,)
            ]
            assert analyst.execute("SELECT study_id FROM gap_trend").fetchall() == [("done",)]
            keys = analyst.execute(
                "SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
            ).fetchall()[0][0]
            assert keys == len(TABLES)


def test_a_failed_publication_is_logged_and_the_study_goes_on(tmp_path, caplog):
    with Store(tmp_path / "w.duckdb") as store:
        store.snapshots.target.mkdir()  # nothing can be renamed over a folder
        store.insert("studies", _study_row("s"))
        store.snapshots.stage_recorded()
        assert "not refreshed" in caplog.text
        assert store.query("SELECT count(*) AS n FROM studies")["n"][0] == 1


def _study_row(study_id: str) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "study_id": [study_id],
            "name": ["n"],
            "profile": ["quick"],
            "seed": [1],
            "agent_backend": ["embedded"],
            "config_json": ["{}"],
            "config_hash": ["h"],
            "code_version": ["v"],
            "dataset_sha256s": ["{}"],
            "status": ["running"],
        }
    )
