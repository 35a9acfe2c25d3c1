from test_summary import add_study

import tasks.report
from labgap.store import Store


def test_verdict_change_emits_the_documented_event(tmp_path, monkeypatch):
    emitted = []
    monkeypatch.setattr(tasks.report, "emit_event", lambda **kwargs: emitted.append(kwargs))
    with Store(tmp_path / "s.duckdb") as store:
        add_study(store, "n1", "nightly", "replicated", 0)
        add_study(store, "n2", "nightly", "inconclusive", 1)
        change = tasks.report.alert_on_verdict_change.fn(store, "n2")
        assert tasks.report.alert_on_verdict_change.fn(store, "n1") is None
    assert change is not None and len(emitted) == 1
    event = emitted[0]
    assert event["event"] == "labgap.study.verdict-changed"
    assert event["resource"]["prefect.resource.id"] == "labgap.study-name.nightly"
    assert event["payload"] == {
        "name": "nightly",
        "study_id": "n2",
        "verdict": "inconclusive",
        "previous_study_id": "n1",
        "previous_verdict": "replicated",
    }


def test_artifact_keys_are_valid():
    key = tasks.report.artifact_key("Rt_Replication.v2-abc", "leaderboard")
    assert key == "leaderboard-rt-replication-v2-abc"
