"""A Claude study killed inside an agent round, under the default process executor, resumes
and finishes without a single paid request answered twice."""

import json
import os
import signal
import threading
import time

import pytest
import yaml
from cli_runs import cli_env, start_run
from fake_anthropic import FakeAnthropic, Reply, _round_of, dropped_connection, researcher

from labgap.store.connection import Store

pytestmark = pytest.mark.slow


class StallOnce:
    """The researcher, except that from the first second-round request sent after that agent's
    second-round experiments ran, every request is held unanswered until the test has killed the
    study (then dropped, unbilled); after the kill it answers again."""

    def __init__(self):
        self.stalled = threading.Event()
        self.killed = threading.Event()

    def __call__(self, body: dict) -> Reply:
        if not self.killed.is_set() and (
            self.stalled.is_set() or (_round_of(body) == 1 and _after_experiments(body))
        ):
            self.stalled.set()
            self.killed.wait(timeout=120)
            return dropped_connection()
        return researcher(body)


def _after_experiments(body: dict) -> bool:
    asked = body["messages"][-2]["content"] if len(body["messages"]) > 1 else []
    return any(b.get("type") == "tool_use" and b["name"] == "run_experiments" for b in asked)


def paid(server: FakeAnthropic) -> list[str]:
    """Bodies of the requests the API answered (and so billed), canonical JSON."""
    return [
        json.dumps(r.body, sort_keys=True)
        for r in server.requests
        if r.scripted and r.reply.status == 200 and not r.reply.drop
    ]


def test_a_claude_study_killed_mid_round_resumes_without_a_repeated_paid_call(
    tiny_study_tasks, tmp_path
):
    lab, heldout, production = (task.model_dump(mode="json") for task in tiny_study_tasks)
    key = "sk-ant-test-" + os.urandom(16).hex()
    script = StallOnce()
    with FakeAnthropic(script, api_key=key) as server:
        config = tmp_path / "study.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "name": "killed-claude",
                    "lab_task": lab,
                    "heldout_tasks": [heldout],
                    "production_targets": [production],
                    "n_agents": 2,
                    "rounds": 2,
                    "quick_seeds": 2,
                    "confirmation_seeds": 3,
                    "design": "fixed",
                    "scoring_budget": 10,
                    "agent_backend": "claude",
                    "claude": {"base_url": server.base_url},
                    "workers": 2,
                    "executor": "process",
                }
            )
        )
        env = {**cli_env(tmp_path), "ANTHROPIC_API_KEY": key}
        db = tmp_path / "study.duckdb"
        first = start_run(config, db, env, start_new_session=True)
        deadline = time.monotonic() + 300
        while not script.stalled.wait(timeout=1) and first.poll() is None:
            assert time.monotonic() < deadline, "the study never reached round 2's experiments"
        if not script.stalled.is_set():
            pytest.fail("the study ended before round 2: " + first.stdout.read()[-3000:])
        time.sleep(3)  # answers already sent are recorded; every new request is held
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        script.killed.set()
        answered_before = len(paid(server))
        second = start_run(config, db, env)
        output, _ = second.communicate(timeout=600)
        assert second.returncode == 0, output[-4000:]
        bodies = paid(server)
        assert len(bodies) > answered_before
        assert len(set(bodies)) == len(bodies), "a paid request was answered twice"
        with Store(db) as store:
            calls = store.query("SELECT count(*) AS n FROM llm_calls")["n"][0]
            status = store.query("SELECT status FROM studies")["status"][0]
        assert status == "completed"
        assert calls == len(bodies)
        assert key not in output
