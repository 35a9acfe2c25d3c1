"""What a Claude agent is told about its scores, through a real `GuardedLab` and `TrialBook`: the
seeds a score really used, rounded dev PGRs, free re-asks, and the minimum seeds to win."""

import json
import secrets

import pytest
from claude_agents import MIN_SEEDS, FakeLab, RecordingLab, make_agent
from claude_logs import MemoryConversationLog
from fake_anthropic import FakeAnthropic, message, text, tool_use
from pydantic import ValidationError

from labgap.config import StudyConfig, load_study_config
from labgap.engine.w2s import W2SEngine
from labgap.errors import LabgapInputError
from labgap.methods.spec import MethodSpec
from labgap.search.claude.tools import MAX_SEEDS

M = {"loss": "logconf", "aux_weight": 0.5, "warmup": 0.2}


@pytest.fixture
def api_key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


def run(methods, n_seeds=None):
    tool_input = {"methods": methods} | ({} if n_seeds is None else {"n_seeds": n_seeds})
    return tool_use("run_experiments", tool_input)


def submit(method):
    return tool_use("submit_method", {"method": method, "rationale": "best so far"})


def experiment_results(log: MemoryConversationLog, agent_id: int = 0) -> list[dict]:
    """Every run_experiments result the agent read, in order."""
    return [
        item
        for stored in log.messages(agent_id)
        if stored.kind == "tool_results"
        for block in stored.content
        for item in json.loads(block["content"]).get("results", [])
    ]


def test_results_carry_the_seeds_the_score_really_used(api_key, tiny_binary_task):
    lab = RecordingLab(tiny_binary_task, engine=W2SEngine())
    log = MemoryConversationLog()
    script = [
        message(run([M], n_seeds=1)),
        # Asked again this round on more seeds: the lab answers with the round's one-seed call.
        message(run([M], n_seeds=5)),
        message(tool_use("post_finding", {"method": M, "rationale": "aux helps"})),
        message(submit(M)),
        message(run([M], n_seeds=2)),
        message(submit(M)),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key)
        first = agent.run_round(0, [], lab)
        second = agent.run_round(1, [], lab)
    once, again, later = experiment_results(log)
    assert (once["n_seeds"], again["n_seeds"], later["n_seeds"]) == (1, 1, 2)
    assert once["cost"] == "1 dev-scoring call" == later["cost"]
    assert again["cost"] == (
        "free: already scored for you in round 0 on 1 seed(s), not 5; a method is scored once "
        "per round, so ask for other seeds in a later round"
    )
    (post,) = first.posts
    assert post.n_seeds == 1 and [s.n_seeds for s in first.scored] == [1, 1]
    assert [s.n_seeds for s in second.scored] == [2]
    assert [(row.round, json.loads(row.seeds)) for row in lab.rows] == [(0, [0]), (1, [0, 1])]
    assert [trial.seed for trial in lab.trials_run] == [0, 1]


def test_agents_see_dev_pgr_to_three_decimals_while_the_lab_keeps_it_whole(
    api_key, tiny_binary_task
):
    lab = RecordingLab(tiny_binary_task)
    log = MemoryConversationLog()
    script = [
        message(run([M], n_seeds=1)),
        message(tool_use("post_finding", {"method": M, "rationale": "aux helps"}), submit(M)),
        message(tool_use("read_forum", {})),
        message(text("Noted.")),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
        make_agent(1, server, log, api_key).run_round(1, outcome.posts, lab)
    (row,) = lab.rows
    (result,) = experiment_results(log)
    assert row.dev_pgr != round(row.dev_pgr, 3)  # a ratio over 43 correct-count differences
    assert result["dev_pgr"] == round(row.dev_pgr, 3)
    assert outcome.scored[0].dev_pgr == outcome.posts[0].dev_pgr == round(row.dev_pgr, 3)
    read = json.loads(log.messages(1)[-2].content[0]["content"])
    assert read["posts"][0]["dev_pgr"] == round(row.dev_pgr, 3)
    assert lab.calls == [row]  # the lab's own record, full precision, as embedded agents get it


def test_asking_again_on_the_same_seeds_is_free_in_any_round(api_key, tiny_binary_task):
    lab = RecordingLab(tiny_binary_task, budget=4)
    log = MemoryConversationLog()
    other = {"loss": "bootstrap", "aux_weight": 0.3}
    third = {"loss": "logconf", "aux_weight": 0.9}
    script = [
        message(run([M, other], n_seeds=2)),
        message(submit(M)),
        message(run([M, third], n_seeds=2)),
        message(run([M], n_seeds=3)),
        message(run([M], n_seeds=2), submit(M)),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key)
        agent.run_round(0, [], lab)
        agent.run_round(1, [], lab)
    costs = [(item["summary"], item["n_seeds"], item["cost"]) for item in experiment_results(log)]
    assert costs == [
        ("logconf aux_weight=0.5 warmup=0.2", 2, "1 dev-scoring call"),
        ("bootstrap aux_weight=0.3", 2, "1 dev-scoring call"),
        ("logconf aux_weight=0.5 warmup=0.2", 2, "free: already scored for you in round 0"),
        ("logconf aux_weight=0.9", 2, "1 dev-scoring call"),
        ("logconf aux_weight=0.5 warmup=0.2", 3, "1 dev-scoring call"),  # other seeds
        ("logconf aux_weight=0.5 warmup=0.2", 2, "free: already scored for you in round 0"),
    ]
    # One row per charged call, keyed (agent, round, method); the free answers wrote none.
    rows = [(row.round, row.method_hash, len(json.loads(row.seeds))) for row in lab.rows]
    method = MethodSpec(**M).method_hash
    assert rows == [
        (0, method, 2),
        (0, MethodSpec(**other).method_hash, 2),
        (1, MethodSpec(**third).method_hash, 2),
        (1, method, 3),
    ]
    assert [row.budget_left for row in lab.rows] == [3, 2, 1, 0]
    free = experiment_results(log)[2]
    assert free["dev_pgr"] == round(lab.rows[0].dev_pgr, 3)


def test_the_minimum_seeds_to_win_is_in_the_rules_and_the_default(api_key):
    log, lab = MemoryConversationLog(), FakeLab()
    script = [message(run([M])), message(submit(M)), message(text("Done."))]
    with FakeAnthropic(script, api_key=api_key) as server:
        make_agent(0, server, log, api_key, min_seeds=MIN_SEEDS).run_round(0, [], lab)
        make_agent(1, server, MemoryConversationLog(), api_key).run_round(0, [], lab)
    stated, unstated = server.scripted_bodies[0]["system"], server.scripted_bodies[2]["system"]
    assert (
        "A method is only eligible to win when the pipeline has scored it on at least 3 seeds "
        "(run_experiments uses 3 when you leave n_seeds out)"
    ) in stated
    assert "at least the study's minimum number of seeds" in unstated
    assert lab.calls[0][3] == MIN_SEEDS  # n_seeds left out: the lab's minimum
    assert experiment_results(log)[0]["n_seeds"] == MIN_SEEDS


def test_a_claude_study_needing_more_seeds_than_an_agent_may_ask_is_refused():
    with pytest.raises(ValidationError) as refused:
        StudyConfig(agent_backend="claude", quick_seeds=MAX_SEEDS + 1)
    assert "quick_seeds=6 is more than the claude backend's limit of 5 seeds per method" in str(
        refused.value
    )
    with pytest.raises(LabgapInputError, match="quick_seeds <= 5"):
        load_study_config(agent_backend="claude", quick_seeds=6)
    assert StudyConfig(agent_backend="claude", quick_seeds=MAX_SEEDS).quick_seeds == 5
    assert StudyConfig(agent_backend="embedded", quick_seeds=6).quick_seeds == 6
    assert StudyConfig(agent_backend="claude", profile="full").quick_seeds == 3
