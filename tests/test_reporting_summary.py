from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from labgap.reporting.data import load_report_data
from labgap.reporting.questions import answer
from labgap.reporting.summary import study_summary, verdict_change
from labgap.store.connection import Store


def add_study(
    store: Store,
    study_id: str,
    name: str,
    verdict: str | None,
    days: int,
    status="completed",
    generalisation: str | None = None,
    production: str | None = None,
):
    """A studies row; without headline verdicts, as a study recorded before schema 3."""
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
                    "generalisation_verdict": generalisation,
                    "production_verdict": production,
                    "started_at": started,
                }
            ]
        ),
    )


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.duckdb") as opened:
        yield opened


R, F, U = "replicated", "failed_to_replicate", "inconclusive"


def headlines(store: Store, study_id: str) -> list[tuple]:
    change = verdict_change(load_report_data(store, study_id))
    if change is None:
        return []
    return [(c.question, c.previous_verdict, c.verdict) for c in change.changes]


def test_a_changed_verdict_is_reported_against_the_previous_completed_study(store):
    add_study(store, "a1", "nightly", R, 0, generalisation=R, production=R)
    add_study(store, "a2", "nightly", None, 1, status="failed")
    add_study(store, "b1", "other", F, 2, generalisation=F, production=F)
    add_study(store, "a3", "nightly", F, 3, generalisation=R, production=F)
    change = verdict_change(load_report_data(store, "a3"))
    assert change is not None and change.name == "nightly"
    assert (change.study_id, change.previous_study_id) == ("a3", "a1")
    assert [(c.question, c.previous_verdict, c.verdict) for c in change.changes] == [
        ("production", R, F)
    ]
    assert (change.generalisation_verdict, change.production_verdict) == (R, F)
    assert (change.previous_generalisation_verdict, change.previous_production_verdict) == (R, R)
    assert (change.previous_verdict, change.verdict) == (f"production {R}", f"production {F}")


def test_a_change_of_either_headline_verdict_is_reported(store):
    """The overall verdict stays failed throughout: only the questions' verdicts move."""
    add_study(store, "a1", "nightly", F, 0, generalisation=R, production=F)
    add_study(store, "a2", "nightly", F, 1, generalisation=F, production=F)
    add_study(store, "a3", "nightly", F, 2, generalisation=F, production=U)
    add_study(store, "a4", "nightly", F, 3, generalisation=R, production=F)
    add_study(store, "a5", "nightly", F, 4, generalisation=R, production=F)
    assert headlines(store, "a2") == [("generalisation", R, F)]
    assert headlines(store, "a3") == [("production", F, U)]
    assert headlines(store, "a4") == [("generalisation", F, R), ("production", U, F)]
    assert headlines(store, "a5") == []
    assert verdict_change(load_report_data(store, "a4")).verdict == (
        f"generalisation {R}; production {F}"
    )


def test_against_a_study_before_the_headline_verdicts_the_overall_verdicts_are_compared(store):
    add_study(store, "old", "nightly", R, 0)
    add_study(store, "new", "nightly", U, 1, generalisation=R, production=U)
    add_study(store, "same", "other", R, 0)
    add_study(store, "same2", "other", R, 1, generalisation=R, production=R)
    assert headlines(store, "new") == [("overall", R, U)]
    change = verdict_change(load_report_data(store, "new"))
    assert (change.previous_generalisation_verdict, change.previous_production_verdict) == (
        None,
        None,
    )
    assert headlines(store, "same2") == []


def test_only_questions_both_studies_answered_are_compared(store):
    """A study without production targets, then one with them: production is new, not changed."""
    add_study(store, "a1", "nightly", R, 0, generalisation=R)
    add_study(store, "a2", "nightly", F, 1, generalisation=R, production=F)
    add_study(store, "a3", "nightly", F, 2, generalisation=F, production=F)
    assert headlines(store, "a2") == []
    assert headlines(store, "a3") == [("generalisation", R, F)]


def test_no_change_and_first_study_report_nothing(store):
    add_study(store, "a1", "nightly", U, 0, generalisation=U, production=U)
    assert verdict_change(load_report_data(store, "a1")) is None
    add_study(store, "a2", "nightly", U, 1, generalisation=U, production=U)
    assert verdict_change(load_report_data(store, "a2")) is None


def test_only_a_completed_study_reports_a_change_and_only_against_earlier_ones(store):
    add_study(store, "a1", "nightly", R, 0, generalisation=R, production=R)
    add_study(store, "a2", "nightly", None, 1, status="running")
    add_study(store, "a3", "nightly", F, 2, generalisation=F, production=R)
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
    assert [(t.n, t.look, t.stop_reason) for t in summary.targets] == [
        (g.n, g.look, g.stop_reason) for g in data.gaps_of("target")
    ]
    assert all(t.n >= 4 and t.look >= 1 and t.stop_reason for t in summary.targets)
    assert (summary.lab_seeds, summary.lab_stop_reason) == (data.lab.n, data.lab.stop_reason)
    # the scripted truth: the held-out task collapses, the production target keeps its gain
    assert (summary.generalisation_verdict, summary.production_verdict) == (
        "failed_to_replicate",
        "replicated",
    )
    assert summary.generalisation_reasons == data.headline("generalisation").reasons
    assert summary.production_reasons == data.headline("production").reasons
    assert summary.design == "sequential"
    assert summary.overall_verdict == data.study.overall_verdict and summary.overall_reasons
    assert summary.hacking_flags == []
    assert incomplete.lab_effect is None and incomplete.targets == []
    assert incomplete.overall_reasons == [] and incomplete.winner_family is not None
    assert (incomplete.generalisation_verdict, incomplete.production_verdict) == (None, None)
    assert incomplete.production_reasons == ["not decided yet (status running)"]


def test_a_question_without_targets_or_before_the_headline_verdicts_says_why(report_studies):
    with Store(report_studies.db) as store:
        data = load_report_data(store, report_studies.second)
    heldout_only = data.model_copy(
        update={
            "study": data.study.model_copy(update={"production_verdict": None}),
            "gaps": [
                row
                for row in data.gaps
                if row.role != "production" or row.kind not in ("target", "headline")
            ],
        }
    )
    assert answer(heldout_only, "production") == (
        None,
        ["not asked: the study has no production targets"],
    )
    assert answer(heldout_only, "generalisation")[0] == "failed_to_replicate"
    legacy = data.model_copy(
        update={
            "study": data.study.model_copy(
                update={"generalisation_verdict": None, "production_verdict": None}
            ),
            "gaps": [row for row in data.gaps if row.kind != "headline"],
        }
    )
    verdict, reasons = answer(legacy, "generalisation")
    assert verdict is None and reasons[0].startswith("not recorded: the study predates")
    assert f"its one verdict over all targets was {data.study.overall_verdict}" in reasons[0]
