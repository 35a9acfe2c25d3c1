"""Ctrl-C during a study: it is recorded as cancelled, and the same command resumes and finishes it.

A real `labgap run` process, interrupted with SIGINT as a person at the terminal would.
"""

import signal

import duckdb
import pytest
from cli_runs import cli_env, start_run, tiny_study_config

pytestmark = pytest.mark.slow


def test_ctrl_c_leaves_the_study_cancelled_and_running_it_again_finishes_it(
    tmp_path, tiny_study_tasks
):
    config = tiny_study_config(tmp_path, tiny_study_tasks, name="interrupted", seed=4, rounds=3)
    db = tmp_path / "study.duckdb"
    env = cli_env(tmp_path)
    first = start_run(config, db, env)
    seen = []
    for line in first.stdout:
        seen.append(line)
        if "round 1/3" in line:
            first.send_signal(signal.SIGINT)
            break
    output = "".join(seen) + first.communicate(timeout=120)[0]
    assert first.returncode == 130, output[-3000:]
    assert "run the same command again to resume it" in output
    with duckdb.connect(str(db), read_only=True) as connection:
        status, error, finished = connection.execute(
            "SELECT status, error, finished_at FROM studies"
        ).fetchall()[0]
    assert status == "cancelled" and finished is not None
    assert error.startswith("KeyboardInterrupt during stage 2/4 search"), error

    second = start_run(config, db, env)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output[-3000:]
    with duckdb.connect(str(db), read_only=True) as connection:
        status, error = connection.execute("SELECT status, error FROM studies").fetchall()[0]
        calls = connection.execute("SELECT count(*) FROM scoring_calls").fetchall()[0][0]
    assert (status, error) == ("completed", None)
    assert calls == 2 * 3
