from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from labgap.store import Store
from labgap.summary import verdict_change


def add_study(
    store: Store, study_id: str, name: str, verdict: str | None, days: int, status="completed"
):
    started = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=days)
    store.insert(
        "studies",
        pl.DataFrame(
            [
                {
                    "study_id": study_id,
                    "name": name,
                    "profile": "quick",
                    "seed": days,
                    "agent_backend": "embedded",
                    "config_json": "{}",
                    "config_hash": study_id,
                    "code_version": "test",
                    "dataset_sha256s": "{}",
                    "status": status,
                    "overall_verdict": verdict,
                    "started_at": started,
                }
            ]
        ),
    )


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as opened:
        yield opened


def test_a_changed_verdict_is_reported_against_the_previous_completed_study(store):
    add_study(store, "a1", "nightly", "replicated", 0)
    add_study(store, "a2", "nightly", None, 1, status="failed")
    add_study(store, "b1", "other", "failed_to_replicate", 2)
    add_study(store, "a3", "nightly", "failed_to_replicate", 3)
    change = verdict_change(store, "a3")
    assert change is not None
    assert (change.previous_study_id, change.previous_verdict) == ("a1", "replicated")
    assert change.verdict == "failed_to_replicate" and change.name == "nightly"


def test_no_change_and_first_study_report_nothing(store):
    add_study(store, "a1", "nightly", "inconclusive", 0)
    assert verdict_change(store, "a1") is None
    add_study(store, "a2", "nightly", "inconclusive", 1)
    assert verdict_change(store, "a2") is None
