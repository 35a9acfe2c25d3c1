"""The study on a real Dask cluster (a scheduler and two worker processes on 127.0.0.1): the same
numbers as the process pool, with each worker loading its data into its own cache."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_flows_study import tiny_config

from labgap.store.connection import Store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

DASK = str(Path(sys.executable).with_name("dask"))
TRIAL_NUMBERS = (
    "phase, task, method_hash, seed, weak_acc_dev, weak_acc_test, ceiling_acc_dev, "
    "ceiling_acc_test, student_acc_dev, student_acc_test, student_top_class_share, pgr_dev, "
    "pgr_test"
)
GAP_NUMBERS = (
    "target, kind, n, delta, ci95_low, ci95_high, ci_adj_low, ci_adj_high, p_value, p_holm, "
    "rho, rho_ci_low, rho_ci_high, margin_upper, naive_estimate, verdict, seeds_needed, flags"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dask_cluster(tmp_path):
    """A scheduler and two single-threaded workers, each with its own data and Prefect folders;
    all three are stopped whatever the test does. The workers import the experiment code as they
    start (`--preload`), while the test runs its process-pool study."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    processes = [subprocess.Popen([DASK, "scheduler", "--port", str(port), *common])]
    folders = []
    try:
        for name in ("w1", "w2"):
            folder = tmp_path / name
            folders.append(folder / "data")
            env = {
                **os.environ,
                "LABGAP_DATA_DIR": str(folder / "data"),
                "PREFECT_HOME": str(folder / "prefect"),
            }
            command = [DASK, "worker", address, "--nworkers", "1", "--nthreads", "1", *common]
            command += ["--name", name, "--local-directory", str(folder / "dask")]
            command += ["--preload", "tasks.experiments"]
            processes.append(subprocess.Popen(command, env=env))
        yield address, folders
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def numbers(db: Path) -> tuple:
    with Store(db) as store:
        trials = store.query(f"SELECT {TRIAL_NUMBERS} FROM trials ORDER BY ALL")
        gaps = store.query(f"SELECT {GAP_NUMBERS} FROM gap_results ORDER BY ALL")
    return trials, gaps


def test_a_study_on_a_dask_cluster_has_the_numbers_of_the_process_pool(
    dask_cluster, tiny_study_tasks, tmp_path, monkeypatch
):
    from distributed import Client

    from flows.study import replication_study

    address, worker_data = dask_cluster
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "flow-data"))
    pool = tiny_config(tiny_study_tasks, study_id="tiny-pool")
    on_dask = tiny_config(
        tiny_study_tasks, study_id="tiny-dask", executor="dask", dask_address=address
    )
    assert on_dask.config_hash == pool.config_hash
    replication_study(config=pool, db_path=str(tmp_path / "pool.duckdb"))
    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
    summary = replication_study(config=on_dask, db_path=str(tmp_path / "dask.duckdb"))
    assert summary.status == "completed"
    pool_trials, pool_gaps = numbers(tmp_path / "pool.duckdb")
    dask_trials, dask_gaps = numbers(tmp_path / "dask.duckdb")
    assert dask_trials.height == pool_trials.height > 0 and dask_gaps.height == 7
    assert dask_trials.equals(pool_trials)
    assert dask_gaps.equals(pool_gaps)
    for folder in worker_data:
        assert any((folder / "cache").rglob("*")), f"{folder}: the worker cached nothing"
