import polars as pl
from studies import assert_png
from test_reporting_summary import add_study

import tasks.report
from labgap.reporting.data import load_report_data
from labgap.store.connection import Store


def test_verdict_change_emits_the_documented_event(tmp_path, monkeypatch):
    emitted = []
    monkeypatch.setattr(tasks.report, "emit_event", lambda **kwargs: emitted.append(kwargs))
    with Store(tmp_path / "s.duckdb") as store:
        add_study(store, "n1", "nightly", "replicated", 0)
        add_study(store, "n2", "nightly", "inconclusive", 1)
        change = tasks.report.alert_on_verdict_change.fn(load_report_data(store, "n2"))
        assert tasks.report.alert_on_verdict_change.fn(load_report_data(store, "n1")) is None
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


def test_publish_report_writes_files_and_artifacts_from_the_data(
    report_studies, tmp_path, monkeypatch
):
    studies = report_studies
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    artifacts = []
    for name in ("create_table_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(tasks.report, name, lambda _n=name, **kw: artifacts.append((_n, kw)))
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
        view = store.query(
            "SELECT rank, family, n_seeds, proposed_by, method_hash FROM leaderboard "
            "WHERE study_id = ? ORDER BY rank LIMIT 20",
            [studies.second],
        )
    files = tasks.report.publish_report.fn(data)
    assert files.folder == tmp_path / "data" / "reports" / studies.second
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert_png(png)
    (table_name, table), (markdown_name, markdown) = artifacts
    assert (table_name, markdown_name) == ("create_table_artifact", "create_markdown_artifact")
    assert table["key"] == f"leaderboard-{studies.second}"
    assert list(table["table"][0]) == [
        "rank",
        "family",
        "mean_dev_pgr",
        "se_dev_pgr",
        "n_seeds",
        "proposed_by",
        "method_hash",
    ]
    assert pl.DataFrame(table["table"]).select(view.columns).equals(view)
    assert markdown["key"] == f"report-{studies.second}"
    assert markdown["markdown"].startswith(files.markdown.read_text())
    assert f"- report: `{files.markdown}`" in markdown["markdown"]
