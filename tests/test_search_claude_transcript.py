"""A Claude agent's stored conversation: the state it replays to, and its wire form."""

import json

from fake_anthropic import text

from labgap.methods.spec import MethodSpec
from labgap.search.claude.tools import tool_result
from labgap.search.claude.transcript import StoredMessage, Transcript, wire_messages


def at_round_1(seq, role, kind, content):
    return StoredMessage(
        agent_id=0, round=1, seq=seq, role=role, content_json=json.dumps(content), kind=kind
    )


def tool_call(tool_id, name, tool_input=None):
    return {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input or {}}


def test_the_transcript_replays_only_what_the_pipeline_did():
    method = {"loss": "bootstrap", "aux_weight": 0.5}
    result = {"method": method, "summary": "s", "dev_pgr": 0.3, "n_seeds": 2, "cost": "free"}
    scored = {"results": [result]}
    posted = {"round": 1, "agent_id": 0, "method": method, "dev_pgr": 0.3, "n_seeds": 2}
    messages = [
        at_round_1(0, "user", "prompt", [text("Round 1 begins.")]),
        at_round_1(
            1,
            "assistant",
            "model",
            [
                tool_call("a", "run_experiments"),
                tool_call("b", "post_finding", {"method": method, "rationale": "helps"}),
                tool_call("c", "read_forum"),
            ],
        ),
        at_round_1(
            2,
            "user",
            "tool_results",
            [
                tool_result("a", scored, is_error=False),
                tool_result("b", {"posted": posted}, is_error=False),
                tool_result("c", {"error": "not run: budget", "not_run": True}),
            ],
        ),
        at_round_1(3, "assistant", "model", [tool_call("d", "submit_method")]),
        at_round_1(4, "user", "tool_results", [tool_result("d", {"error": "invalid"})]),
    ]
    transcript = Transcript(messages)
    assert [(s.round, s.method, s.dev_pgr, s.n_seeds) for s in transcript.scored] == [
        (1, MethodSpec(**method), 0.3, 2)
    ]
    assert transcript.posts[1].method == MethodSpec(**method) and transcript.posts[1].dev_pgr == 0.3
    assert transcript.posts[1].rationale == "helps"  # from the call's input, not echoed back
    assert transcript.submissions == {}  # the submission was refused
    assert transcript.tool_calls == 3  # the refused call counts, the one not run does not
    assert transcript.forum_read == set()  # the forum read was not run


def test_wire_messages_merge_roles_and_drop_empty_text():
    def stored(seq, role, kind, content):
        return StoredMessage(
            agent_id=0, round=0, seq=seq, role=role, content_json=json.dumps(content), kind=kind
        )

    tool = {"type": "tool_use", "id": "t1", "name": "read_forum", "input": {}, "caller": None}
    result = {"type": "tool_result", "tool_use_id": "t1", "content": "{}", "is_error": False}
    messages = [
        stored(0, "user", "prompt", [text("Round 0 begins.")]),
        stored(1, "assistant", "model", [{"type": "text", "text": "", "citations": None}, tool]),
        stored(2, "user", "tool_results", [result]),
        stored(3, "user", "prompt", [text("Round 1 begins.")]),
    ]
    assert wire_messages(messages) == [
        {"role": "user", "content": [text("Round 0 begins.")]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "read_forum", "input": {}}],
        },
        {"role": "user", "content": [result, text("Round 1 begins.")]},
    ]
