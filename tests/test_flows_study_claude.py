"""`--agents claude` end to end: the real flow and the real SDK against the fake Messages API."""

import json
import secrets

import pytest
from db import count_rows
from fake_anthropic import FakeAnthropic, Reply, message, researcher, tool_use
from typer.testing import CliRunner

from flows.cli import app
from labgap.config import StudyConfig
from labgap.llm.settings import ClaudeSettings
from labgap.programs.isolation import detect_isolation
from labgap.store.connection import Store
from labgap.store.schema import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def api_key(monkeypatch) -> str:
    key = "sk-ant-test-" + secrets.token_hex(16)
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    return key


def claude_config(tasks, base_url: str) -> StudyConfig:
    lab, heldout, production = tasks
    return StudyConfig(
        name="tiny-claude",
        study_id="tiny-claude",
        lab_task=lab,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=2,
        rounds=2,
        quick_seeds=2,
        confirmation_seeds=3,
        design="fixed",
        scoring_budget=10,
        agent_backend="claude",
        claude=ClaudeSettings(base_url=base_url),
        workers=2,
        executor="thread",
    )


def test_claude_study_end_to_end_records_costs_and_resumes_without_paid_calls(
    tiny_study_tasks, api_key, tmp_path, caplog
):
    from flows.study import replication_study

    db = tmp_path / "claude.duckdb"
    with FakeAnthropic(researcher, api_key=api_key) as server:
        config = claude_config(tiny_study_tasks, server.base_url)
        config_file = tmp_path / "study.json"
        config_file.write_text(config.model_dump_json(exclude={"agent_backend"}))
        result = CliRunner().invoke(
            app, ["run", "--agents", "claude", "--config", str(config_file), "--db", str(db)]
        )
        assert result.exit_code == 0, result.output
        assert "production transfer (production targets): " in result.output
        answered = [r for r in server.requests if r.scripted]
        with Store(db) as store:
            calls = store.query("SELECT * FROM llm_calls ORDER BY created_at, agent_id, turn")
            assert calls.height == len(answered) > 0
            usages = [json.loads(r.reply.body)["usage"] for r in answered]
            for column in ("input_tokens", "output_tokens", "cache_read_input_tokens"):
                assert calls[column].sum() == sum(u[column] for u in usages)
            assert set(calls["model"]) == {"claude-opus-4-6"}
            cost = store.query("SELECT * FROM cost_per_agent ORDER BY agent_id")
            assert cost["agent_id"].to_list() == [0, 1]
            assert (cost["usd"] > 0).all() and (cost["experiments"] > 0).all()
            assert cost["usd"].sum() == pytest.approx(calls["usd"].sum())
            assert count_rows(store, "agent_messages") > calls.height
            scored = store.query("SELECT count(*) AS n FROM scoring_calls")["n"][0]
            assert scored == 2 * 2 * 2  # agents × rounds × two methods each
            before = {table: count_rows(store, table) for table in TABLES}
            dump = "".join(store.query(f"SELECT * FROM {table}").write_csv() for table in TABLES)
        assert api_key not in dump
        assert api_key not in caplog.text
        replication_study(config=config, db_path=str(db))
        assert len([r for r in server.requests if r.scripted]) == len(answered)
        with Store(db) as store:
            assert {table: count_rows(store, table) for table in TABLES} == before


def test_claude_backend_without_a_key_stops_at_once(monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    result = CliRunner().invoke(
        app, ["run", "--agents", "claude", "--db", str(tmp_path / "x.duckdb")]
    )
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY" in result.output
    assert not (tmp_path / "x.duckdb").exists()


PROGRAM = """
import w2s_kit

PARAMS = {"epochs_scale": {"type": "float", "low": 0.5, "high": 2.0, "default": 1.0}}


def fit_predict(data):
    recipe = w2s_kit.recipe_with(
        data.recipe, epochs=max(1, round(data.recipe.epochs * data.params["epochs_scale"]))
    )
    model = w2s_kit.train_mlp(data.train_features, data.teacher_probs, recipe, data.seed)
    return model.predict_proba(data.eval_features)
"""


def programmer(body: dict) -> Reply:
    """A scripted Claude that writes code: a first draft with a syntax error, the fix once the
    error comes back, an experiment on the program, then it submits the program."""
    last = body["messages"][-1]["content"]
    if any(block["type"] == "text" for block in last):
        broken = PROGRAM.replace("def fit_predict(data):", "def fit_predict(data)")
        return message(tool_use("write_program", write_input(broken)))
    asked = {b["name"]: b for b in body["messages"][-2]["content"] if b["type"] == "tool_use"}
    result = json.loads(next(b["content"] for b in last if b["type"] == "tool_result"))
    if "write_program" in asked and "error" in result:
        assert "syntax error" in result["error"]
        return message(tool_use("write_program", write_input(PROGRAM)))
    if "write_program" in asked:
        ref = {"program_id": result["program_id"], "params": {"epochs_scale": 1.0}}
        return message(tool_use("run_experiments", {"methods": [ref]}))
    if "run_experiments" in asked:
        (scored,) = result["results"]
        assert scored["dev_pgr"] is not None, scored
        ref = asked["run_experiments"]["input"]["methods"][0]
        return message(tool_use("submit_method", {"method": ref, "rationale": "it trains"}))
    raise AssertionError(f"unexpected turn: {sorted(asked)}")


def write_input(source: str) -> dict:
    return {"name": "scaled_vanilla", "source": source, "rationale": "vanilla, tunable length"}


def test_a_claude_agent_writes_fixes_and_submits_a_program_that_the_study_replicates(
    tiny_study_tasks, api_key, tmp_path
):
    if detect_isolation().level != "full":
        pytest.skip(f"agent-written programs need the full sandbox: {detect_isolation().detail}")
    from flows.study import replication_study

    db = tmp_path / "programmer.duckdb"
    with FakeAnthropic(programmer, api_key=api_key) as server:
        config = claude_config(tiny_study_tasks, server.base_url).model_copy(
            update={"study_id": "tiny-programmer", "executor": "process", "rounds": 1}
        )
        summary = replication_study(config=config, db_path=str(db))
    assert summary.status == "completed"
    assert summary.winner_family == "program:scaled_vanilla"
    with Store(db) as store:
        (source,) = store.query("SELECT source FROM method_programs")["source"]
        assert source == PROGRAM
        phases = store.query(
            "SELECT DISTINCT phase FROM trials WHERE method_json LIKE '%scaled_vanilla%'"
        )["phase"]
        assert {"search", "confirm", "transfer"} <= set(phases)
        errors = store.query(
            "SELECT count(*) AS n FROM agent_messages WHERE content_json LIKE '%syntax error%'"
        )["n"][0]
        assert errors == 2  # each agent was told, and fixed it
        assert store.query("SELECT count(*) AS n FROM failed_trials")["n"][0] == 0
