"""The ops path: `make deploy` (a real Prefect server on loopback, the work pool, prefect.yaml's
deployments and a worker), a run triggered through the API with parameters, then `make stop`."""

import socket
import subprocess
from pathlib import Path

import pytest
from db import count_rows
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from labgap.config import StudyConfig
from labgap.store.connection import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    make_vars = [f"PREFECT_PORT={port}", f"PREFECT_HOME={home}"]
    try:
        subprocess.run(
            ["make", "--no-print-directory", "deploy", *make_vars],
            cwd=ROOT,
            check=True,
            timeout=300,
            capture_output=True,
            text=True,
        )
        with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            yield home
    finally:
        subprocess.run(
            ["make", "--no-print-directory", "stop", *make_vars],
            cwd=ROOT,
            timeout=120,
            capture_output=True,
        )


def test_a_bad_parameter_is_rejected_with_the_field_named(deployed):
    with pytest.raises(Exception, match=r"config\.n_agents"):
        run_deployment(
            "replication-study/nightly-quick",
            parameters={"config": {"name": "bad", "profile": "quick", "n_agents": 0}},
            timeout=0,
        )


def test_quick_deployment_runs_with_parameters_and_leaves_artifacts_and_rows(
    deployed, tiny_study_tasks, tmp_path
):
    lab, heldout, production = tiny_study_tasks
    config = StudyConfig(
        name="deployed-tiny",
        profile="quick",
        lab_task=lab,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=2,
        rounds=1,
        confirmation_seeds=3,
        design="fixed",
        seed=5,
    )
    db = tmp_path / "deployed.duckdb"
    flow_run = run_deployment(
        "replication-study/nightly-quick",
        parameters={"config": config.model_dump(mode="json"), "db_path": str(db)},
        timeout=600,
    )
    log = (deployed / "worker.log").read_text()
    assert flow_run.state is not None and flow_run.state.is_completed(), log[-3000:]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
        )
    keys = {artifact.key for artifact in artifacts}
    assert any(key.startswith("leaderboard-deployed-tiny") for key in keys), keys
    assert any(key.startswith("report-deployed-tiny") for key in keys), keys
    with Store(db) as store:
        study = store.query("SELECT status, seed, overall_verdict FROM studies").row(0, named=True)
        assert study["status"] == "completed" and study["seed"] == 5
        # lab, two targets, the known methods, two headline verdicts, overall
        assert count_rows(store, "gap_results") == 1 + 2 + 1 + 2 + 1
        assert count_rows(store, "transfer_trials") == 3 * 3


def test_the_untouched_quick_form_runs_a_quick_study(deployed):
    """What the Custom-run form sends untouched: the schema's defaults under the deployment's
    parameters. Empty sizes must come from the deployment's profile, not the default profile."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("replication-study/nightly-quick")
    schema = deployment.parameter_openapi_schema
    form = {**schema["properties"]["config"]["default"], **deployment.parameters["config"]}
    properties = schema["definitions"]["StudyConfig"]["properties"]
    for size in ("n_agents", "rounds", "quick_seeds", "confirmation_seeds", "heldout_tasks"):
        assert form[size] is None and "empty: from the profile" in properties[size]["description"]
    assert properties["n_agents"]["anyOf"][0] == {"maximum": 32, "minimum": 1, "type": "integer"}
    assert "rt-lab" in properties["lab_task"]["anyOf"][0]["enum"]
    config = StudyConfig.model_validate(form)
    assert (config.n_agents, config.rounds, config.confirmation_seeds) == (3, 2, 4)
    assert config.production_targets == ["rt-noisy-teacher"]
    assert config.resolved_study_id.startswith("nightly-quick-")
