"""Real `labgap run` processes on the tiny tasks, as the end-to-end tests start them."""

import os
import subprocess
import sys
from pathlib import Path

import yaml


def tiny_study_config(folder: Path, tasks, **fields) -> Path:
    """A study config file on the tiny tasks (lab, held-out, production), threads, small sizes."""
    lab, heldout, production = (task.model_dump(mode="json") for task in tasks)
    settings = {
        "lab_task": lab,
        "heldout_tasks": [heldout],
        "production_targets": [production],
        "n_agents": 2,
        "confirmation_seeds": 3,
        "seeds_per_look": 4,
        "max_seeds": 7,
        "executor": "thread",
        **fields,
    }
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def cli_env(folder: Path) -> dict[str, str]:
    """Its own data folder and Prefect home; a temporary Prefect server per run."""
    env = {**os.environ, "LABGAP_DATA_DIR": str(folder / "data")}
    env["PREFECT_HOME"] = str(folder / "prefect")
    env.pop("PREFECT_API_URL", None)
    return env


def start_run(config: Path, db: Path, env: dict, **options) -> subprocess.Popen:
    labgap = Path(sys.executable).with_name("labgap")
    return subprocess.Popen(
        [str(labgap), "run", "--config", str(config), "--db", str(db)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **options,
    )
