"""The Claude agent backend end to end: the real SDK, over HTTP, against the fake Messages API,
with a fake `Lab` whose dev PGRs come from a formula (no training)."""

import json
import logging
import secrets

import pytest
from claude_agents import TASK, FakeLab, make_agent, pipeline_pgr, run_rounds, shown
from claude_logs import MemoryConversationLog
from fake_anthropic import (
    FakeAnthropic,
    Reply,
    dropped_connection,
    message,
    researcher,
    text,
    tool_use,
    usage,
)

from labgap.errors import LabgapInputError
from labgap.llm.budgets import StudyBudgetTracker, cost_usd
from labgap.llm.client import AnthropicUnavailable
from labgap.llm.settings import AgentBudget, ClaudeSettings, StudyBudget
from labgap.methods.spec import MethodSpec
from labgap.search.agent import Agent, ForumPost
from labgap.search.claude.agent import ClaudeAgent
from labgap.search.claude.transcript import recorded_spend, wire_messages
from labgap.search.directions import DIRECTIONS


@pytest.fixture
def api_key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


def test_two_agents_research_for_two_rounds(api_key, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ANTHROPIC_API_KEY", api_key)
    log, lab = MemoryConversationLog(), FakeLab()
    with FakeAnthropic(researcher, api_key=api_key) as server:
        settings = ClaudeSettings(base_url=server.base_url, request_timeout_seconds=10)
        tracker = StudyBudgetTracker(settings.study_budget)
        agents = [
            ClaudeAgent(
                i, DIRECTIONS[i], settings, log, task_description=TASK, study_budget=tracker
            )
            for i in (0, 1)
        ]
        outcomes = run_rounds(agents, lab, rounds=2)
    assert all(isinstance(agent, Agent) for agent in agents)

    for round_index, done in enumerate(outcomes):
        for agent, outcome in zip(agents, done, strict=True):
            assert outcome.stop_reason is None and not outcome.out_of_budget
            assert outcome.api_calls == 4
            assert [s.dev_pgr for s in outcome.scored] == [
                shown(pipeline_pgr(s.method)) for s in outcome.scored
            ]
            assert len(outcome.scored) == 2
            best = max(outcome.scored, key=lambda s: s.dev_pgr)
            assert outcome.submitted == best.method == best.method.model_copy()
            (post,) = outcome.posts
            assert (post.round, post.agent_id, post.method) == (
                round_index,
                agent.agent_id,
                best.method,
            )
            assert post.dev_pgr == shown(pipeline_pgr(best.method)) and post.n_seeds == 3
    assert len(lab.calls) == 4
    assert len(server.requests) == 16 == sum(len(log.calls(i)) for i in (0, 1))

    # Round 1's forum read shows round 0's posts, best first, with the pipeline's scores.
    forum_reads = [
        json.loads(result["content"])
        for msg in log.messages(1)
        if msg.kind == "tool_results" and msg.round == 1
        for result in msg.content
        if "posts" in result["content"]
    ]
    (read,) = forum_reads
    assert [p["dev_pgr"] for p in read["posts"]] == sorted(
        (post.dev_pgr for outcome in outcomes[0] for post in outcome.posts), reverse=True
    )

    # Every request carried the whole conversation; tool results answered every tool call.
    last_request = server.scripted_bodies[-1]
    assert last_request["model"] == "claude-opus-4-6"
    assert {tool["name"] for tool in last_request["tools"]} == {
        "describe_method_space",
        "run_experiments",
        "read_forum",
        "post_finding",
        "submit_method",
        "write_program",
        "read_program",
    }
    systems = {body["system"] for body in server.scripted_bodies}
    assert len(systems) == 2 and all(TASK in system for system in systems)
    assert any("Your research direction: Loss design." in system for system in systems)
    assert last_request["cache_control"] == {"type": "ephemeral"}

    # One cost row per response, equal to the usage the server returned, priced from the table.
    sent = {
        r.reply.headers["request-id"]: json.loads(r.reply.body)["usage"] for r in server.requests
    }
    for call in log.calls(0) + log.calls(1):
        assert call.usage.model_dump() == sent[call.request_id]
        assert call.usd == pytest.approx(cost_usd(call.usage, settings.price))
        assert call.attempts == 1
    assert [c.turn for c in log.calls(0)] == list(range(8))
    recorded = recorded_spend(log, [0, 1])
    assert (tracker.spent.tokens, tracker.spent.tool_calls) == (
        recorded.tokens,
        recorded.tool_calls,
    )
    assert tracker.spent.usd == pytest.approx(recorded.usd)
    assert recorded.tool_calls == 20  # 5 per agent and round

    # finding() matches the embedded agents: the best pipeline-scored method so far.
    finding = agents[0].finding(2)
    best = max((s for o in outcomes for s in o[0].scored), key=lambda s: s.dev_pgr)
    assert finding.method == best.method and finding.dev_pgr == best.dev_pgr

    # The key went to the server's auth header only.
    stored = [m.model_dump_json() for i in (0, 1) for m in log.messages(i)]
    stored += [c.model_dump_json() for i in (0, 1) for c in log.calls(i)]
    stored += [o.model_dump_json() for done in outcomes for o in done]
    assert not any(api_key in row for row in stored)
    assert api_key not in caplog.text


def test_malformed_tool_input_gets_an_error_result_the_model_sees(api_key):
    log, lab = MemoryConversationLog(), FakeLab()
    too_big = {"methods": [{"loss": "logconf", "aux_weight": 2.0}], "n_seeds": 3}
    script = [
        message(tool_use("run_experiments", too_big)),
        message(tool_use("run_experiments", {"methods": "logconf"}), tool_use("launch_rocket", {})),
        message(tool_use("post_finding", {"method": {"loss": "product"}, "rationale": "trust me"})),
        message(tool_use("submit_method", {"method": {"loss": "logconf"}, "rationale": "fixed"})),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
    assert outcome.submitted == MethodSpec(loss="logconf") and outcome.stop_reason is None
    assert lab.calls == []

    def results_in(body):
        return [
            json.loads(b["content"]) | {"is_error": b["is_error"]}
            for b in body["messages"][-1]["content"]
        ]

    bodies = server.scripted_bodies
    (first,) = results_in(bodies[1])
    assert first["is_error"] and "methods.0.aux_weight" in first["error"]
    assert "less than or equal to 1" in first["error"]
    bad_shape, unknown = results_in(bodies[2])
    assert bad_shape["is_error"] and "run_experiments" in bad_shape["error"]
    assert unknown["is_error"] and "unknown tool 'launch_rocket'" in unknown["error"]
    (unscored_post,) = results_in(bodies[3])
    assert (
        unscored_post["is_error"] and "run it with run_experiments first" in unscored_post["error"]
    )
    assert outcome.posts == []


def test_tools_in_one_response_see_each_others_effects(api_key):
    log, lab = MemoryConversationLog(), FakeLab()
    method = {"loss": "bootstrap", "aux_weight": 0.5, "warmup": 0.2}
    all_at_once = message(
        tool_use("run_experiments", {"methods": [method], "n_seeds": 5}),
        tool_use("post_finding", {"method": method, "rationale": "bootstrap helps"}),
        tool_use("submit_method", {"method": method, "rationale": "bootstrap helps"}),
    )
    with FakeAnthropic([all_at_once], api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
    assert outcome.stop_reason is None and outcome.api_calls == 1
    assert outcome.submitted == MethodSpec(**method)
    (post,) = outcome.posts
    assert post.dev_pgr == shown(pipeline_pgr(MethodSpec(**method))) and post.n_seeds == 5


def test_scoring_budget_exhaustion_is_told_to_the_model(api_key):
    log, lab = MemoryConversationLog(), FakeLab(scoring_budget=1)
    two = {"methods": [{"loss": "logconf"}, {"loss": "bootstrap"}], "n_seeds": 2}
    script = [
        message(tool_use("run_experiments", two)),
        message(tool_use("run_experiments", {"methods": [{"loss": "logconf"}], "n_seeds": 2})),
        message(
            tool_use("submit_method", {"method": {"loss": "logconf"}, "rationale": "only one"})
        ),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
    refused = json.loads(server.scripted_bodies[1]["messages"][-1]["content"][0]["content"])
    assert "dev-scoring budget: 1 scoring call(s) left for 2 methods" in refused["error"]
    assert [s.method for s in outcome.scored] == [MethodSpec(loss="logconf")]
    assert outcome.submitted == MethodSpec(loss="logconf")


def test_end_turn_without_tools_ends_the_round_without_a_submission(api_key):
    log = MemoryConversationLog()
    with FakeAnthropic([message(text("I am done."))], api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key)
        outcome = agent.run_round(0, [], FakeLab())
    assert outcome.submitted is None and outcome.api_calls == 1
    assert outcome.stop_reason == "ended its turn without submitting a method"
    assert agent.finding(0) is None


def test_the_round_stops_at_its_api_call_cap(api_key):
    log = MemoryConversationLog()
    with FakeAnthropic(lambda body: message(tool_use("read_forum", {})), api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key, max_api_calls_per_round=3).run_round(
            0, [], FakeLab()
        )
    assert outcome.stop_reason == "reached max_api_calls_per_round (3)"
    assert len(server.requests) == 3 and not outcome.out_of_budget


@pytest.mark.parametrize(
    ("budget", "reply_usage", "reason"),
    [
        (AgentBudget(max_tokens_per_agent=5_000), usage(2_000, 100), "agent token budget"),
        (AgentBudget(max_usd_per_agent=0.05), usage(4_000, 100), "agent $ budget"),
    ],
)
def test_token_and_dollar_budgets_end_the_agents_work(api_key, budget, reply_usage, reason):
    log = MemoryConversationLog()
    reply = lambda body: message(tool_use("read_forum", {}), usage_=reply_usage)  # noqa: E731
    with FakeAnthropic(reply, api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key, agent_budget=budget)
        outcome = agent.run_round(0, [], FakeLab())
        again = agent.run_round(1, [], FakeLab())
    assert outcome.out_of_budget and outcome.stop_reason.startswith(reason)
    assert 1 <= outcome.api_calls < 25
    spent = sum(call.usage.total_tokens for call in log.calls(0))
    assert spent <= budget.max_tokens_per_agent
    assert sum(call.usd for call in log.calls(0)) <= budget.max_usd_per_agent
    # Its work is over: the next round makes no call.
    assert again.out_of_budget and again.api_calls == 0
    assert len(server.requests) == outcome.api_calls


def test_tool_call_budget_answers_the_rest_as_not_run(api_key):
    log, lab = MemoryConversationLog(), FakeLab()
    three = message(
        *(
            tool_use("run_experiments", {"methods": [{"aux_weight": w}], "n_seeds": 1})
            for w in (0.1, 0.2, 0.3)
        )
    )
    with FakeAnthropic([three], api_key=api_key) as server:
        agent = make_agent(
            0, server, log, api_key, agent_budget=AgentBudget(max_tool_calls_per_agent=2)
        )
        outcome = agent.run_round(0, [], lab)
    assert (
        outcome.out_of_budget and outcome.stop_reason == "agent tool-call budget (2 calls) reached"
    )
    assert len(lab.calls) == 2 and len(outcome.scored) == 2
    results = [json.loads(b["content"]) for b in log.messages(0)[-1].content]
    assert results[2] == {
        "error": "not run: agent tool-call budget (2 calls) reached",
        "not_run": True,
    }
    assert len(server.requests) == 1


def test_study_budget_is_shared_by_the_agents(api_key):
    log = MemoryConversationLog()
    tracker = StudyBudgetTracker(StudyBudget(max_tokens_per_study=12_000))
    reply = lambda body: message(tool_use("read_forum", {}), usage_=usage(2_000, 0))  # noqa: E731
    with FakeAnthropic(reply, api_key=api_key) as server:
        agents = [make_agent(i, server, log, api_key, tracker=tracker) for i in (0, 1)]
        outcomes = run_rounds(agents, FakeLab(), rounds=1)[0]
    assert all(o.out_of_budget and o.stop_reason.startswith("study token budget") for o in outcomes)
    assert tracker.spent.tokens == sum(c.usage.total_tokens for i in (0, 1) for c in log.calls(i))
    assert tracker.spent.tokens <= 12_000


def test_resume_after_the_lab_crashes_reruns_tools_not_requests(api_key):
    log = MemoryConversationLog()
    with FakeAnthropic(researcher, api_key=api_key) as server:
        crashing = FakeLab(fail_on_call=1)
        with pytest.raises(RuntimeError, match="worker crashed"):
            make_agent(0, server, log, api_key).run_round(0, [], crashing)
        assert len(server.requests) == 2
        stored = log.messages(0)
        assert stored[-1].kind == "model" and stored[-1].tool_uses[0]["name"] == "run_experiments"

        lab = FakeLab()
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
    assert outcome.stop_reason is None and outcome.submitted is not None
    assert outcome.api_calls == 4 and len(server.requests) == 4
    assert len(lab.calls) == 1  # the stored run_experiments call, run again for free
    _assert_no_request_sent_twice(server)
    assert [m.seq for m in log.messages(0)] == list(range(len(log.messages(0))))


def test_resume_after_the_server_dies_sends_only_new_requests(api_key):
    log, sleeps = MemoryConversationLog(), []
    answered: list[Reply] = []

    def dies_after_two(body):
        if len(answered) == 2:
            return dropped_connection()
        answered.append(researcher(body))
        return answered[-1]

    with FakeAnthropic(dies_after_two, api_key=api_key) as first:
        agent = make_agent(0, first, log, api_key, sleeps=sleeps, max_attempts=2)
        with pytest.raises(AnthropicUnavailable, match="connection error"):
            agent.run_round(0, [], FakeLab())
    assert len(first.requests) == 4 and len(sleeps) == 1  # 2 answered, then 2 failed attempts
    assert len(log.calls(0)) == 2

    with FakeAnthropic(researcher, api_key=api_key) as second:
        outcome = make_agent(0, second, log, api_key).run_round(0, [], FakeLab())
    assert outcome.stop_reason is None and outcome.api_calls == 4
    assert len(second.requests) == 2  # only the two calls not answered before the crash
    resumed = second.scripted_bodies[0]["messages"]
    assert resumed == first.scripted_bodies[2]["messages"]  # the request that never got an answer
    assert resumed[:-1] == wire_messages(log.messages(0))[: len(resumed) - 1]


def _assert_no_request_sent_twice(server: FakeAnthropic) -> None:
    conversations = [
        json.dumps(body["messages"], sort_keys=True) for body in server.scripted_bodies
    ]
    assert len(set(conversations)) == len(conversations)


def test_the_agent_needs_a_key_in_the_environment(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = ClaudeSettings()
    with pytest.raises(LabgapInputError, match="ANTHROPIC_API_KEY is not set"):
        ClaudeAgent(
            0,
            DIRECTIONS[0],
            settings,
            MemoryConversationLog(),
            task_description=TASK,
            study_budget=StudyBudgetTracker(settings.study_budget),
        )


def test_the_agent_reads_the_forum_the_round_began_with(api_key):
    def post(agent_id, dev_pgr):
        method = MethodSpec(loss="logconf", aux_weight=0.1 * (agent_id + 1))
        return ForumPost(
            round=0, agent_id=agent_id, method=method, dev_pgr=dev_pgr, n_seeds=3, rationale="r"
        )

    forum = [post(1, 0.1), post(2, None), post(3, 0.4)]
    script = [message(tool_use("read_forum", {})), message(text("Nothing to add."))]
    with FakeAnthropic(script, api_key=api_key) as server:
        outcome = make_agent(0, server, MemoryConversationLog(), api_key).run_round(
            1, forum, FakeLab()
        )
    assert outcome.stop_reason == "ended its turn without submitting a method"
    prompt = server.scripted_bodies[0]["messages"][0]["content"][0]["text"]
    assert prompt.startswith("Round 1 begins. The forum holds 3 post(s)")
    read = json.loads(server.scripted_bodies[1]["messages"][-1]["content"][0]["content"])
    assert [(p["agent_id"], p["dev_pgr"]) for p in read["posts"]] == [(3, 0.4), (1, 0.1), (2, None)]


def test_a_round_without_a_post_posts_the_agents_finding(api_key):
    log, lab = MemoryConversationLog(), FakeLab()
    methods = [{"loss": "logconf", "aux_weight": w, "warmup": 0.2} for w in (0.2, 0.6)]
    script = [
        message(tool_use("run_experiments", {"methods": methods, "n_seeds": 2})),
        message(tool_use("submit_method", {"method": methods[1], "rationale": "more aux"})),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key)
        outcome = agent.run_round(0, [], lab)
    assert outcome.stop_reason is None and outcome.submitted == MethodSpec(**methods[1])
    (post,) = outcome.posts
    assert post == agent.finding(0)
    assert (post.round, post.agent_id, post.method) == (0, 0, MethodSpec(**methods[1]))
    assert post.dev_pgr == shown(pipeline_pgr(post.method)) and post.n_seeds == 2
    assert lab.calls == [(0, 0, [MethodSpec(**m) for m in methods], 2)]
