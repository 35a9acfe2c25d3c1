from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from labgap.reporting.data import load_report_data
from labgap.reporting.summary import study_summary, verdict_change
from labgap.store.connection import Store


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
    change = verdict_change(load_report_data(store, "a3"))
    assert change is not None
    assert (change.previous_study_id, change.previous_verdict) == ("a1", "replicated")
    assert change.verdict == "failed_to_replicate" and change.name == "nightly"


def test_no_change_and_first_study_report_nothing(store):
    add_study(store, "a1", "nightly", "inconclusive", 0)
    assert verdict_change(load_report_data(store, "a1")) is None
    add_study(store, "a2", "nightly", "inconclusive", 1)
    assert verdict_change(load_report_data(store, "a2")) is None


def test_only_a_completed_study_reports_a_change_and_only_against_earlier_ones(store):
    add_study(store, "a1", "nightly", "replicated", 0)
    add_study(store, "a2", "nightly", None, 1, status="running")
    add_study(store, "a3", "nightly", "failed_to_replicate", 2)
    assert verdict_change(load_report_data(store, "a2")) is None
    assert load_report_data(store, "a2").previous.study_id == "a1"
    assert verdict_change(load_report_data(store, "a1")) is None  # a3 is later, not previous


def test_study_summary_of_a_finished_study(report_studies):
    studies = report_studies
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
        incomplete = study_summary(load_report_data(store, studies.incomplete))
    summary = study_summary(data, "elsewhere.duckdb")
    assert (summary.study_id, summary.name, summary.status) == (
        studies.second,
        "tiny-report",
        "completed",
    )
    assert summary.database == "elsewhere.duckdb"
    assert study_summary(data).database == str(studies.db)
    assert summary.baseline_dev_pgr == data.baseline_dev_pgr is not None
    assert summary.winner_method == data.winner.method_json and data.winner_confirmed
    assert (summary.winner_family, summary.winner_dev_pgr) == (
        data.winner.family,
        data.winner.mean_dev_pgr,
    )
    assert summary.winner_fresh_test_pgr == data.winner_fresh_test_pgr is not None
    assert summary.baseline_fresh_test_pgr == data.baseline_fresh_test_pgr is not None
    assert (summary.lab_effect, summary.naive_lab_effect) == (
        data.lab.delta,
        data.lab.naive_estimate,
    )
    assert [t.target for t in summary.targets] == [g.target for g in data.gaps_of("target")]
    assert all(t.role and t.verdict and t.reasons for t in summary.targets)
    assert summary.overall_verdict == data.study.overall_verdict and summary.overall_reasons
    assert summary.hacking_flags == []
    assert incomplete.lab_effect is None and incomplete.targets == []
    assert incomplete.overall_reasons == [] and incomplete.winner_family is not None
