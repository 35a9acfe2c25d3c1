"""Claude agents that write code: method programs through the tools, over the real SDK against the
fake Messages API. Programs are checked without running them; the lab runs them in the real
sandbox (a real `W2SEngine` on the tiny task) or, where only the tools are under test, a fake lab
scores them from a formula."""

import json
import secrets

import pytest
from claude_agents import FakeLab, RecordingLab, make_agent, pipeline_pgr, shown
from claude_logs import MemoryConversationLog
from fake_anthropic import FakeAnthropic, message, text, tool_use

from labgap.engine.w2s import TrialFailure, TrialResult, W2SEngine
from labgap.methods.spec import MethodSpec
from labgap.programs.catalog import library_names, library_program
from labgap.programs.isolation import detect_isolation
from labgap.programs.method import make_program, program_id
from labgap.programs.sandbox import SandboxLimits
from labgap.search.agent import ForumPost
from labgap.search.claude.programs import PROGRAM_SOURCES
from labgap.search.claude.transcript import Transcript

SHARPEN = '''"""Vanilla training on the teacher's probabilities, sharpened by a power."""
import w2s_kit

PARAMS = {"power": {"type": "float", "low": 0.5, "high": 4.0, "default": 2.0}}


def fit_predict(data):
    targets = data.teacher_probs ** data.params["power"]
    targets = targets / targets.sum(axis=1, keepdims=True)
    model = w2s_kit.train_mlp(data.train_features, targets, data.recipe, data.seed)
    return model.predict_proba(data.eval_features)
'''
BROKEN = SHARPEN.replace("def fit_predict(data):", "def fit_predict(data)")
RAISES = """
def fit_predict(data):
    return data.n_classes / 0
"""
PID = program_id(SHARPEN)


@pytest.fixture
def api_key() -> str:
    return "sk-ant-test-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def engine():
    """A real engine whose sandbox is started once for the module's program runs."""
    isolation = detect_isolation()
    if isolation.level != "full":
        pytest.skip(f"this OS cannot provide the full sandbox: {isolation.detail}")
    engine = W2SEngine()
    sandbox = engine.sandbox(SandboxLimits())
    yield engine
    sandbox.close()


def write(name, source, rationale="an idea"):
    return tool_use("write_program", {"name": name, "source": source, "rationale": rationale})


def run(*methods, n_seeds=None):
    tool_input = {"methods": list(methods)} | ({} if n_seeds is None else {"n_seeds": n_seeds})
    return tool_use("run_experiments", tool_input)


def choose(tool, method, rationale="best so far"):
    return tool_use(tool, {"method": method, "rationale": rationale})


def results(log: MemoryConversationLog, agent_id: int) -> list[dict]:
    """Every tool result the agent got, in order, with its is_error flag."""
    return [
        json.loads(block["content"]) | {"is_error": block["is_error"]}
        for stored in log.messages(agent_id)
        if stored.kind == "tool_results"
        for block in stored.content
    ]


def result_blocks(log: MemoryConversationLog, agent_id: int) -> list[dict]:
    return [
        block
        for stored in log.messages(agent_id)
        if stored.kind == "tool_results"
        for block in stored.content
    ]


def test_an_agent_writes_fixes_runs_posts_and_submits_a_program_another_reads_it(
    api_key, tiny_binary_task, engine
):
    lab = RecordingLab(tiny_binary_task, engine=engine)
    log = MemoryConversationLog()
    sharper = {"program_id": PID, "params": {"power": 3.0}}
    softer = {"program_id": PID, "params": {"power": 1.0}}
    script = [
        # Agent 0, round 0: a syntax error, fixed; two runs; the better posted and submitted.
        message(write("sharpen", BROKEN)),
        message(text("A missing colon."), write("sharpen", SHARPEN)),
        message(run(sharper, {"program_id": PID}, n_seeds=1)),
        message(choose("post_finding", sharper), choose("submit_method", sharper)),
        # Agent 1, round 1, with agent 0's post in its forum: reads it and runs a variant.
        message(
            tool_use("read_forum", {}),
            tool_use("read_program", {"program_id": PID}),
            tool_use("read_program", {"program_id": "0123456789abcdef"}),
        ),
        message(run(softer, n_seeds=1)),
        message(choose("submit_method", softer)),
        # Agent 2, round 1, with an empty forum: agent 0's program is not visible to it.
        message(tool_use("read_program", {"program_id": PID})),
        message(text("Nothing to build on.")),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        first = make_agent(0, server, log, api_key).run_round(0, [], lab)
        second = make_agent(1, server, log, api_key).run_round(1, first.posts, lab)
        third = make_agent(2, server, log, api_key).run_round(1, [], lab)

    broken, written, scored, posted, submitted = results(log, 0)
    assert broken["is_error"]
    assert broken["error"].startswith(  # Python's own message follows the line number
        "the program was not accepted: sharpen: syntax error at line 7: "
    )
    assert broken["error"].endswith(". Fix it and write it again.")
    assert not written["is_error"] and written["program_id"] == PID
    assert written["params"] == {
        "power": {"type": "float", "low": 0.5, "high": 4.0, "default": 2.0}
    }
    assert PID in written["message"] and "run_experiments" in written["message"]

    # Real sandboxed trials: the agent sees each one's dev PGR, rounded, as for any method.
    assert [json.loads(t.method_json)["kind"] for t in lab.trials_run] == ["program"] * 3
    assert all(isinstance(trial, TrialResult) for trial in lab.trials_run)
    rows = [round(row.dev_pgr, 3) for row in lab.rows[:2]]
    assert [r["dev_pgr"] for r in scored["results"]] == rows
    assert all(r["dev_pgr"] is not None and "error" not in r for r in scored["results"])
    assert [r["method"] for r in scored["results"]] == [
        {"program_id": PID, "name": "sharpen", "params": {"power": 3.0}},
        {"program_id": PID, "name": "sharpen", "params": {"power": 2.0}},
    ]
    assert scored["results"][0]["summary"] == f"program sharpen ({PID}) power=3"
    assert scored["results"][0]["cost"] == "1 dev-scoring call"
    assert posted["posted"]["method"] == scored["results"][0]["method"]
    assert submitted["submitted"] == scored["results"][0]["method"] and submitted["scored_before"]

    method = make_program(SHARPEN, "sharpen", {"power": 3.0})
    assert first.stop_reason is None and first.submitted == method
    (post,) = first.posts
    assert post.method == method and post.dev_pgr == scored["results"][0]["dev_pgr"]
    assert [s.method for s in first.scored] == [method, method.with_params({})]
    assert not any(PROGRAM_SOURCES in block for block in result_blocks(log, 0))  # its own

    forum, read, unknown, variant, _ = results(log, 1)
    assert forum["posts"][0]["method"] == scored["results"][0]["method"]
    assert (read["name"], read["source"], read["params"]) == ("sharpen", SHARPEN, written["params"])
    assert unknown["is_error"] and unknown["error"].startswith(
        "no program 0123456789abcdef is available to you"
    )
    assert variant["results"][0]["dev_pgr"] == round(lab.rows[2].dev_pgr, 3)
    assert second.submitted == make_program(SHARPEN, "sharpen", {"power": 1.0})
    # The forum's program is kept on the stored result that first used it, never sent back.
    blocks = result_blocks(log, 1)
    assert blocks[3][PROGRAM_SOURCES] == {PID: {"name": "sharpen", "source": SHARPEN}}
    assert not any(PROGRAM_SOURCES in json.dumps(body) for body in server.scripted_bodies)

    (hidden,) = results(log, 2)
    assert hidden["is_error"] and "no program" in hidden["error"]
    assert third.submitted is None


def test_a_program_that_fails_comes_back_with_its_error(api_key, tiny_binary_task, engine):
    lab = RecordingLab(tiny_binary_task, engine=engine)
    log = MemoryConversationLog()
    raises = {"program_id": program_id(RAISES)}
    script = [
        message(write("divide", RAISES)),
        message(run(raises, n_seeds=2)),
        message(run(raises, n_seeds=2), choose("post_finding", raises)),
        message(choose("submit_method", {"loss": "logconf"})),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        outcome = make_agent(0, server, log, api_key).run_round(0, [], lab)
    _, failed, again, refused, _ = results(log, 0)
    (result,) = failed["results"]
    assert not failed["is_error"]  # the tool worked; the program failed
    assert (result["dev_pgr"], result["n_seeds"], result["cost"]) == (None, 2, "1 dev-scoring call")
    assert result["error"].startswith(
        "failed on 2 of 2 seed(s); seed 0: fit_predict raised ZeroDivisionError: division by zero"
    )
    assert again["results"][0]["error"] == result["error"]
    assert again["results"][0]["cost"].startswith("free: already scored for you in round 0")
    assert refused["is_error"] and "run it with run_experiments first" in refused["error"]
    assert [type(trial) for trial in lab.trials_run] == [TrialFailure, TrialFailure]
    assert len(lab.rows) == 1 and lab.rows[0].dev_pgr is None
    assert [scored.dev_pgr for scored in outcome.scored] == [None, None] and outcome.posts == []
    assert outcome.submitted == MethodSpec(loss="logconf")


def test_write_program_is_refused_without_the_full_sandbox_unless_allowed(api_key, monkeypatch):
    monkeypatch.setenv("LABGAP_SANDBOX", "none")
    source = SHARPEN
    script = [
        message(write("sharpen", source), run({"program_id": PID})),
        message(text("MethodSpecs, then.")),
        message(write("sharpen", source), run({"program_id": PID}, n_seeds=1)),
        message(text("Done.")),
    ]
    with FakeAnthropic(script, api_key=api_key) as server:
        refused_log, allowed_log, lab = MemoryConversationLog(), MemoryConversationLog(), FakeLab()
        make_agent(0, server, refused_log, api_key).run_round(0, [], lab)
        outcome = make_agent(
            0, server, allowed_log, api_key, allow_unsandboxed_programs=True
        ).run_round(0, [], lab)
    refusal, unknown = results(refused_log, 0)
    assert refusal["is_error"] and refusal["error"].startswith(
        "write_program is disabled: this machine cannot fully isolate programs (sandbox level "
        "'none': "
    )
    assert "allow_unsandboxed_programs" in refusal["error"]
    assert unknown["is_error"] and "no program" in unknown["error"]
    assert Transcript(refused_log.messages(0)).tool_calls == 2  # refusals count as tool calls

    written, scored = results(allowed_log, 0)
    assert written["program_id"] == PID
    assert scored["results"][0]["dev_pgr"] == shown(pipeline_pgr(make_program(source, "sharpen")))
    assert [s.method.program_id for s in outcome.scored] == [PID]
    assert lab.calls == [(0, 0, [make_program(source, "sharpen")], 1)]


def forum_program():
    source = SHARPEN.replace("Vanilla training", "Peer training")
    return make_program(source, "peer", {"power": 1.5})


def test_references_resolve_to_own_forum_and_library_programs(api_key):
    peer = forum_program()
    forum = [
        ForumPost(round=0, agent_id=3, method=peer, dev_pgr=0.4, n_seeds=3, rationale="try it")
    ]
    name = library_names()[0]
    library = library_program(name)
    script = [
        message(tool_use("describe_method_space", {})),
        message(
            run(
                {"program_id": library.program_id},
                {"program_id": peer.program_id, "params": {"power": 2.5}},
                {"loss": "logconf"},
                n_seeds=2,
            ),
            run({"program_id": library.program_id, "params": {"nope": 1}}),
            run({"program_id": "not-hex"}),
            run({"program_id": peer.program_id, "params": {"power": 9.0}}),
        ),
        message(choose("submit_method", {"program_id": library.program_id})),
        # Round 1: the forum no longer has the peer's program, but the agent has used it.
        message(run({"program_id": peer.program_id}, n_seeds=2)),
        message(text("Done.")),
    ]
    log, lab = MemoryConversationLog(), FakeLab()
    with FakeAnthropic(script, api_key=api_key) as server:
        agent = make_agent(0, server, log, api_key)
        first = agent.run_round(0, forum, lab)
        second = agent.run_round(1, [], lab)
    space, scored, unknown_param, bad_id, out_of_range, submitted, later = results(log, 0)

    listed = space["programs"]["library"]
    assert [entry["name"] for entry in listed] == library_names()
    assert [entry["program_id"] for entry in listed] == [
        library_program(n).program_id for n in library_names()
    ]
    assert '"program_id"' in space["programs"]["how_to_use"] and "method_schema" in space

    assert [r["method"].get("name") for r in scored["results"]] == [name, "peer", None]
    assert scored["results"][0]["method"]["params"] == library.params  # defaults
    assert unknown_param["error"].startswith(f"program {library.program_id} ({name}): unknown")
    assert "unknown parameter(s) ['nope']" in unknown_param["error"]
    assert bad_id["error"].startswith(
        "invalid input for run_experiments: methods.0.program_id: String should match pattern"
    )
    assert out_of_range["error"] == (
        f"program {peer.program_id} (peer): parameter power: expected 0.5..4, got 9"
    )
    assert first.submitted == library and submitted["submitted"]["name"] == name
    assert [s.method for s in first.scored] == [
        library,
        peer.with_params({"power": 2.5}),
        MethodSpec(loss="logconf"),
    ]
    assert later["results"][0]["method"]["name"] == "peer"
    assert [s.method for s in second.scored] == [peer.with_params({})]

    # Only the result that first used the peer's and the library's programs keeps their sources.
    kept = [sorted(block.get(PROGRAM_SOURCES, {})) for block in result_blocks(log, 0)]
    assert kept == [[], sorted([library.program_id, peer.program_id]), [], [], [], [], []]


def test_a_resumed_agent_replays_its_programs_without_calling_the_api(api_key):
    peer = forum_program()
    forum = [
        ForumPost(round=0, agent_id=3, method=peer, dev_pgr=0.4, n_seeds=3, rationale="try it")
    ]
    own = {"program_id": PID, "params": {"power": 3.0}}
    script = [
        message(write("sharpen", BROKEN), write("sharpen", SHARPEN), run(own, n_seeds=2)),
        message(run({"program_id": peer.program_id}, n_seeds=2)),
        message(
            choose("post_finding", own), choose("submit_method", {"program_id": peer.program_id})
        ),
    ]
    log = MemoryConversationLog()
    with FakeAnthropic(script, api_key=api_key) as server:
        # The lab fails the round's first scoring: the stored response's tools are answered again.
        with pytest.raises(RuntimeError, match="worker crashed"):
            make_agent(0, server, log, api_key, allow_unsandboxed_programs=True).run_round(
                0, forum, FakeLab(fail_on_call=1)
            )
        lab = FakeLab()
        agent = make_agent(0, server, log, api_key, allow_unsandboxed_programs=True)
        outcome = agent.run_round(0, forum, lab)
        requests = len(server.requests)

        # A new agent over the same log, without the forum: no request, no scoring, same state.
        resumed = make_agent(0, server, log, api_key, allow_unsandboxed_programs=True)
        replayed = resumed.run_round(0, [], FakeLab())
    assert len(server.requests) == requests == 3
    assert replayed == outcome and replayed.api_calls == 3
    assert len(lab.calls) == 2

    sharper = make_program(SHARPEN, "sharpen", {"power": 3.0})
    assert outcome.submitted == peer.with_params({}) and outcome.posts[0].method == sharper
    assert [s.method for s in outcome.scored] == [sharper, peer.with_params({})]
    assert resumed.finding(1) == agent.finding(1)

    transcript = Transcript(log.messages(0))
    assert set(transcript.programs) == {PID, peer.program_id} and transcript.written == {PID}
    assert transcript.programs[peer.program_id].source == peer.source
    assert transcript.submissions == {0: (peer.with_params({}), "best so far")}
    assert transcript.charged == {(0, sharper.method_hash), (0, peer.with_params({}).method_hash)}
    assert transcript.tool_calls == 6
