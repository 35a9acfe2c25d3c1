"""A `ConversationLog` in memory for the Claude agent tests (the study keeps its log in DuckDB:
`labgap.store.conversation.DuckDBConversationLog`)."""

import threading

from labgap.llm.client import LLMCall
from labgap.search.claude.transcript import StoredMessage


class MemoryConversationLog:
    """Messages and calls per agent, guarded by one lock so concurrent agents can share it."""

    def __init__(self) -> None:
        self._messages: dict[int, list[StoredMessage]] = {}
        self._calls: dict[int, list[LLMCall]] = {}
        self._lock = threading.Lock()

    def messages(self, agent_id: int) -> list[StoredMessage]:
        with self._lock:
            return list(self._messages.get(agent_id, []))

    def append(self, message: StoredMessage) -> None:
        with self._lock:
            stored = self._messages.setdefault(message.agent_id, [])
            if message.seq != len(stored):
                raise ValueError(
                    f"agent {message.agent_id}: message seq {message.seq} after {len(stored)} stored"
                )
            stored.append(message)

    def record_call(self, call: LLMCall) -> None:
        with self._lock:
            self._calls.setdefault(call.agent_id, []).append(call)

    def calls(self, agent_id: int) -> list[LLMCall]:
        with self._lock:
            return list(self._calls.get(agent_id, []))
