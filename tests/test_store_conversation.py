"""Claude conversations and API calls in DuckDB: what a resumed agent reads back."""

import json

from labgap.llm.client import LLMCall
from labgap.search.claude.transcript import StoredMessage
from labgap.store.connection import Store
from labgap.store.conversation import DuckDBConversationLog


def test_messages_and_calls_read_back_in_order_per_agent_and_study(tmp_path):
    with Store(tmp_path / "c.duckdb") as store:
        log, other = DuckDBConversationLog(store, "s1"), DuckDBConversationLog(store, "s2")
        messages = [
            StoredMessage(
                agent_id=0,
                round=0,
                seq=seq,
                role="user" if seq % 2 == 0 else "assistant",
                content_json=json.dumps([{"type": "text", "text": f"m{seq}"}]),
                kind="prompt" if seq == 0 else ("model" if seq % 2 else "tool_results"),
            )
            for seq in range(3)
        ]
        for message in reversed(messages):
            log.append(message)
        log.append(messages[0])
        call = LLMCall(
            agent_id=0,
            round=0,
            turn=0,
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
        log.record_call(call)
        assert log.messages(0) == messages
        assert log.calls(0) == [call]
        assert other.messages(0) == [] and log.messages(1) == []
