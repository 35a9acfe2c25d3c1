"""A study killed (SIGKILL, no clean-up) in every stage and resumed ends with a clean run's rows.

Real `labgap run` processes: each is killed with its whole process group (its temporary Prefect
server included) as soon as its log shows the next stage under way, then the same command is run
again; the last run finishes. Every row that carries a number must equal an uninterrupted run's.
"""

import os
import signal
from pathlib import Path

import duckdb
import pytest
from cli_runs import cli_env, start_run, tiny_study_config

pytestmark = pytest.mark.slow

KILL_POINTS = [
    "round 1/2",
    "stage 3/4 confirm and transfer: tiny-multiclass",
    "stage 4/4 analyse: done",
]
"""Mid-search, mid-look (trials of a look recorded, others in flight), and while the report is
written (every row recorded, the study not yet marked completed)."""

COMPARED = {
    "trials": "* EXCLUDE (created_at, wall_seconds, teacher_cached)",
    "scoring_calls": "* EXCLUDE (created_at)",
    "forum_posts": "* EXCLUDE (created_at)",
    "transfer_trials": "* EXCLUDE (created_at)",
    "gap_results": "* EXCLUDE (created_at)",
    "studies": "study_id, status, overall_verdict, generalisation_verdict, production_verdict, "
    "design, hacking_flags, error",
}


def killed_at(marker: str, config: Path, db: Path, env: dict) -> bool:
    """Run until `marker` appears, then SIGKILL the process group; False if it finished first."""
    process = start_run(config, db, env, start_new_session=True)
    for line in process.stdout:
        if marker in line:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return True
    process.wait(timeout=60)
    return False


def rows(db: Path) -> dict[str, list]:
    with duckdb.connect(str(db), read_only=True) as connection:
        return {
            table: connection.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
            for table, columns in COMPARED.items()
        }


def test_killed_in_every_stage_and_resumed_gives_the_rows_of_a_clean_run(
    tmp_path, tiny_study_tasks
):
    config = tiny_study_config(tmp_path, tiny_study_tasks, name="killed", seed=6, rounds=2)
    env = cli_env(tmp_path)

    clean = start_run(config, tmp_path / "clean.duckdb", env)
    output = clean.communicate(timeout=300)[0]
    assert clean.returncode == 0, output[-3000:]

    killed = tmp_path / "killed.duckdb"
    for marker in KILL_POINTS:
        assert killed_at(marker, config, killed, env), f"finished before {marker!r}"
    last = start_run(config, killed, env)
    output = last.communicate(timeout=300)[0]
    assert last.returncode == 0, output[-3000:]
    assert "resuming study" in output

    expected, got = rows(tmp_path / "clean.duckdb"), rows(killed)
    for table in COMPARED:
        assert got[table] == expected[table], table
    assert expected["studies"][0][1] == "completed"
