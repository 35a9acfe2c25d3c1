import duckdb
import polars as pl
import pytest
from db import count_rows

from labgap.engine.w2s import W2SEngine
from labgap.store.connection import Store
from labgap.store.rows import to_frame
from labgap.store.schema import SCHEMA_VERSION, TABLES, VIEWS


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "t.duckdb") as opened:
        yield opened


def test_schema_is_created_idempotently(tmp_path):
    path = tmp_path / "s.duckdb"
    Store(path).close()
    with Store(path) as again:
        tables = set(again.query("SELECT table_name FROM information_schema.tables")["table_name"])
    assert set(TABLES) <= tables


def test_writing_the_same_trials_twice_leaves_one_row_each(store, tiny_binary_task):
    engine = W2SEngine(disk_cache=False)
    from labgap.methods.spec import PRESETS

    results = [engine.run(tiny_binary_task, PRESETS[m], 0) for m in ("vanilla", "logconf")]
    frame = to_frame(results, study_id="s1", code_version="test")
    assert store.insert("trials", frame) == 2
    assert store.insert("trials", frame) == 0
    assert store.insert("trials", to_frame(results[:1], study_id="s2", code_version="t")) == 1
    assert count_rows(store, "trials") == 3


def test_failed_transaction_leaves_nothing(store):
    good = pl.DataFrame(
        {
            "study_id": ["s"],
            "task": ["t"],
            "role": ["lab"],
            "task_hash": ["h"],
            "spec_json": ["{}"],
            "dataset": ["d"],
            "dataset_sha256": ["x"],
            "n_rows": [1],
            "n_classes": [2],
        }
    )
    with pytest.raises(duckdb.ConstraintException), store.transaction() as cursor:
        store.insert("tasks", good, cursor)
        store.insert(
            "tasks",
            good.with_columns(pl.lit(None).alias("dataset")).with_columns(
                pl.lit("u").alias("task")
            ),
            cursor,
        )
    assert count_rows(store, "tasks") == 0


def test_second_writer_gets_a_clear_error(store, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        message = pool.apply(_open_in_other_process, (str(store.path),))
    assert "one writer" in message


def _open_in_other_process(path: str) -> str:
    try:
        Store(path)
    except RuntimeError as error:
        return str(error)
    return "opened"


def test_a_database_from_another_schema_version_is_refused_clearly(tmp_path):
    path = tmp_path / "old.duckdb"
    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE trials (study_id VARCHAR)")
    connection.close()
    with pytest.raises(RuntimeError, match="schema version unknown.*new --db file"):
        Store(path)


def test_a_schema_1_database_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    """Through every migration since schema 1 (schema 3: headline verdicts, looks)."""
    path = tmp_path / "v1.duckdb"
    Store(path).close()
    added = {
        "scoring_calls": ["error", "charge"],
        "studies": ["sandbox", "generalisation_verdict", "production_verdict", "design"],
        "trials": ["program_cpu_seconds"],
        "gap_results": ["look", "stop_reason", "rho_ci_set"],
    }
    connection = duckdb.connect(str(path))
    for view in VIEWS:
        connection.execute(f"DROP VIEW {view}")
    for table, columns in added.items():
        for column in columns:
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    connection.execute("DROP TABLE method_programs")
    connection.execute("DROP TABLE failed_trials")
    connection.execute("DELETE FROM schema_info")
    connection.execute("INSERT INTO schema_info VALUES (1)")
    connection.execute("INSERT INTO agents (study_id, agent_id, direction, direction_json, "
                       "backend, sampler_seed, scoring_budget) VALUES ('s', 0, 'd', '{}', 'e', 0, 3)")  # fmt: skip
    connection.close()
    with Store(path) as store:
        for table, columns in added.items():
            present = set(store.query(f"SELECT * FROM {table} LIMIT 0").columns)
            assert set(columns) <= present
        assert {"method_programs", "failed_trials"} <= set(store.query("SHOW TABLES")["name"])
        assert store.query("SELECT max(version) AS v FROM schema_info")["v"][0] == SCHEMA_VERSION
        assert store.query("SELECT count(*) AS n FROM agents")["n"][0] == 1
