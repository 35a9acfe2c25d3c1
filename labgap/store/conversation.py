"""The Claude agents' conversations and API calls, kept in DuckDB so a study resumes from them."""

from labgap.llm.client import LLMCall
from labgap.search.claude.transcript import StoredMessage
from labgap.store.connection import Store
from labgap.store.record import Gate, check_frame
from labgap.store.rows import to_frame


class DuckDBConversationLog:
    """`ConversationLog` on the study's store: rows of `agent_messages` and `llm_calls`.

    Every append is its own transaction, so what was said and paid for is on disk before the
    agent acts on it; the analysts' snapshot follows at most every ~30 s. With a `gate`, each row
    passes its quality suite first, as the recorder's frames do: a failed critical check raises
    and writes nothing, since a resumed agent replays its state from these rows.
    """

    def __init__(self, store: Store, study_id: str, gate: Gate | None = None):
        self.store = store
        self.study_id = study_id
        self._gate = gate

    def messages(self, agent_id: int) -> list[StoredMessage]:
        rows = self.store.query(
            "SELECT agent_id, round, seq, role, kind, content_json FROM agent_messages "
            "WHERE study_id = ? AND agent_id = ? ORDER BY seq",
            [self.study_id, agent_id],
        )
        return [StoredMessage.model_validate(row) for row in rows.iter_rows(named=True)]

    def append(self, message: StoredMessage) -> None:
        frame = to_frame([message], study_id=self.study_id)
        batch = f"agent{message.agent_id}-seq{message.seq}"
        check_frame(self.store, self._gate, "agent_messages", frame, batch)
        self.store.insert("agent_messages", frame)
        self._published()

    def record_call(self, call: LLMCall) -> None:
        frame = to_frame([call], study_id=self.study_id)
        check_frame(
            self.store, self._gate, "llm_calls", frame, f"agent{call.agent_id}-turn{call.turn}"
        )
        self.store.insert("llm_calls", frame)
        self._published()

    def _published(self) -> None:
        if self.store.snapshots is not None:
            self.store.snapshots.rows_recorded()

    def calls(self, agent_id: int) -> list[LLMCall]:
        rows = self.store.query(
            "SELECT * EXCLUDE (study_id, created_at) FROM llm_calls "
            "WHERE study_id = ? AND agent_id = ? ORDER BY turn",
            [self.study_id, agent_id],
        )
        return [LLMCall.model_validate(row) for row in rows.iter_rows(named=True)]
