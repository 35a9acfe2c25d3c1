"""Ctrl-C during a study: it is recorded as cancelled, and the same command resumes and finishes it.

A real `labgap run` process, interrupted with SIGINT as a person at the terminal would.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

pytestmark = pytest.mark.slow


def labgap_run(config: Path, db: Path, env: dict) -> subprocess.Popen:
    labgap = Path(sys.executable).with_name("labgap")
    return subprocess.Popen(
        [str(labgap), "run", "--config", str(config), "--db", str(db)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_ctrl_c_leaves_the_study_cancelled_and_running_it_again_finishes_it(
    tmp_path, tiny_study_tasks
):
    lab, heldout, production = (task.model_dump(mode="json") for task in tiny_study_tasks)
    config = tmp_path / "study.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "interrupted",
                "seed": 4,
                "lab_task": lab,
                "heldout_tasks": [heldout],
                "production_targets": [production],
                "n_agents": 2,
                "rounds": 3,
                "confirmation_seeds": 3,
                "executor": "thread",
            }
        )
    )
    db = tmp_path / "study.duckdb"
    env = {**os.environ, "LABGAP_DATA_DIR": str(tmp_path / "data")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    env.pop("PREFECT_API_URL", None)
    first = labgap_run(config, db, env)
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
    assert error.startswith("KeyboardInterrupt during stage 2/5 search"), error

    second = labgap_run(config, db, env)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output[-3000:]
    with duckdb.connect(str(db), read_only=True) as connection:
        status, error = connection.execute("SELECT status, error FROM studies").fetchall()[0]
        calls = connection.execute("SELECT count(*) FROM scoring_calls").fetchall()[0][0]
    assert (status, error) == ("completed", None)
    assert calls == 2 * 3
