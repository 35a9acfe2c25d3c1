"""Claude conversations and API calls in DuckDB: what a resumed agent reads back."""

import json

import pytest
from db import count_rows

from labgap.llm.client import LLMCall
from labgap.quality import QualityGateError, validate_stage
from labgap.search.claude.transcript import StoredMessage
from labgap.store.connection import Store
from labgap.store.conversation import DuckDBConversationLog


def conversation(agent_id: int = 0) -> list[StoredMessage]:
    return [
        StoredMessage(
            agent_id=agent_id,
            round=0,
            seq=seq,
            role="user" if seq % 2 == 0 else "assistant",
            content_json=json.dumps([{"type": "text", "text": f"m{seq}"}]),
            kind="prompt" if seq == 0 else ("model" if seq % 2 else "tool_results"),
        )
        for seq in range(3)
    ]


def api_call(turn: int = 0) -> LLMCall:
    return LLMCall(
        agent_id=0,
        round=0,
        turn=turn,
        model="claude-test",
        input_tokens=10,
        output_tokens=5,
        cache_creation_input_tokens=0,
        cache_read_input_tokens=3,
        latency_seconds=0.2,
        stop_reason="tool_use",
        usd=0.001,
        attempts=1,
        request_id="req_1",
    )


def test_messages_and_calls_read_back_in_order_per_agent_and_study(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        log, other = DuckDBConversationLog(store, "s1"), DuckDBConversationLog(store, "s2")
        messages = conversation()
        for message in reversed(messages):
            log.append(message)
        log.append(messages[0])
        call = api_call()
        log.record_call(call)
        assert log.messages(0) == messages
        assert log.calls(0) == [call]
        assert other.messages(0) == [] and log.messages(1) == []


def test_with_a_gate_each_row_is_checked_and_a_bad_one_is_not_written(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        log = DuckDBConversationLog(
            store, "s1", lambda stage, frame: validate_stage(stage, frame, "s1")
        )
        messages = conversation()
        for message in messages:
            log.append(message)
        log.record_call(api_call())
        batches = store.query(
            "SELECT stage, batch, bool_and(success) AS ok FROM quality_checks "
            "GROUP BY ALL ORDER BY ALL"
        )
        assert [(stage, batch.rsplit("-", 1)[0], ok) for stage, batch, ok in batches.rows()] == [
            ("agent_messages", "agent0-seq0", True),
            ("agent_messages", "agent0-seq1", True),
            ("agent_messages", "agent0-seq2", True),
            ("llm_calls", "agent0-turn0", True),
        ]
        # Rows the models never validated (model_construct), as a bug could build them.
        system = StoredMessage.model_construct(
            **{**messages[0].model_dump(), "seq": 3, "role": "system"}
        )
        with pytest.raises(QualityGateError, match="on column 'role'"):
            log.append(system)
        no_attempt = LLMCall.model_construct(**{**api_call(turn=1).model_dump(), "attempts": 0})
        with pytest.raises(QualityGateError, match="on column 'attempts'"):
            log.record_call(no_attempt)
        assert log.messages(0) == messages and log.calls(0) == [api_call()]
        assert (count_rows(store, "agent_messages"), count_rows(store, "llm_calls")) == (3, 1)
        failed = store.query("SELECT stage, column_name FROM quality_checks WHERE NOT success")
        assert sorted(failed.rows()) == [("agent_messages", "role"), ("llm_calls", "attempts")]
