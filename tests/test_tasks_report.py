import base64
import io
import re
from datetime import UTC, datetime
from uuid import uuid4

from PIL import Image
from prefect.events import Event
from studies import assert_png
from test_reporting_summary import add_study

import tasks.report
from labgap.reporting.data import load_report_data
from labgap.reporting.markdown import ReportFiles
from labgap.store.connection import Store


def test_verdict_change_emits_the_documented_event(tmp_path, monkeypatch):
    emitted = []
    monkeypatch.setattr(tasks.report, "emit_event", lambda **kwargs: emitted.append(kwargs))
    with Store(tmp_path / "s.duckdb") as store:
        add_study(store, "n1", "nightly", "replicated", 0, "completed", "replicated", "replicated")
        add_study(
            store, "n2", "nightly", "inconclusive", 1, "completed", "replicated", "inconclusive"
        )
        change = tasks.report.alert_on_verdict_change.fn(load_report_data(store, "n2"))
        assert tasks.report.alert_on_verdict_change.fn(load_report_data(store, "n1")) is None
    assert change is not None and len(emitted) == 1
    event = emitted[0]
    assert event["event"] == "labgap.study.verdict-changed"
    assert event["resource"] == {
        "prefect.resource.id": "labgap.study-name.nightly",
        "prefect.resource.name": "nightly",
        "labgap.generalisation-verdict": "replicated",
        "labgap.production-verdict": "inconclusive",
        "labgap.changed": "production",
    }
    assert event["payload"] == {
        "name": "nightly",
        "study_id": "n2",
        "previous_study_id": "n1",
        "generalisation_verdict": "replicated",
        "production_verdict": "inconclusive",
        "previous_generalisation_verdict": "replicated",
        "previous_production_verdict": "replicated",
        "changes": [
            {"question": "production", "verdict": "inconclusive", "previous_verdict": "replicated"}
        ],
    }
    Event(id=uuid4(), occurred=datetime.now(UTC), **event)  # what Prefect will accept


def test_the_event_fires_when_only_the_generalisation_verdict_changed(tmp_path, monkeypatch):
    """Both overall verdicts are failed: the change is in the held-out tasks' question."""
    emitted = []
    monkeypatch.setattr(tasks.report, "emit_event", lambda **kwargs: emitted.append(kwargs))
    with Store(tmp_path / "s.duckdb") as store:
        add_study(
            store,
            "n1",
            "nightly",
            "failed_to_replicate",
            0,
            "completed",
            "failed_to_replicate",
            "failed_to_replicate",
        )
        add_study(
            store,
            "n2",
            "nightly",
            "failed_to_replicate",
            1,
            "completed",
            "replicated",
            "failed_to_replicate",
        )
        tasks.report.alert_on_verdict_change.fn(load_report_data(store, "n2"))
    [event] = emitted
    assert event["resource"]["labgap.changed"] == "generalisation"
    assert event["payload"]["changes"] == [
        {
            "question": "generalisation",
            "verdict": "replicated",
            "previous_verdict": "failed_to_replicate",
        }
    ]


def test_artifact_keys_are_one_per_study_name():
    """A deployment's studies share a name, so each artifact key is a history of its runs."""
    assert tasks.report.artifact_key("Rt_Replication.v2", "leaderboard") == (
        "leaderboard-rt-replication-v2"
    )
    assert tasks.report.artifact_key("-Nightly run!-", "report") == "report-nightly-run"
    assert len(tasks.report.artifact_key("x" * 300, "report")) == 100


def publish(data, monkeypatch) -> tuple[ReportFiles, dict, dict]:
    """Run the task with the artifact calls captured: its files, table and markdown artifact."""
    artifacts = {}
    for name in ("create_table_artifact", "create_markdown_artifact"):
        monkeypatch.setattr(tasks.report, name, lambda _n=name, **kw: artifacts.setdefault(_n, kw))
    files = tasks.report.publish_report.fn(data)
    return files, artifacts["create_table_artifact"], artifacts["create_markdown_artifact"]


def test_publish_report_writes_files_and_artifacts_from_the_data(
    report_studies, tmp_path, monkeypatch
):
    studies = report_studies
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
        view = store.query(
            "SELECT rank, family, n_seeds, mean_dev_pgr, se_dev_pgr, proposed_by, method_hash "
            "FROM leaderboard WHERE study_id = ? ORDER BY rank LIMIT 20",
            [studies.second],
        )
    files, table, markdown = publish(data, monkeypatch)
    assert files.folder == tmp_path / "data" / "reports" / studies.second
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert_png(png)
    assert files.html.is_file()
    assert table["key"] == "leaderboard-tiny-report" and markdown["key"] == "report-tiny-report"
    for artifact in (table, markdown):
        assert f"`{studies.second}`" in artifact["description"]

    rows = table["table"]
    assert list(rows[0]) == ["rank", "dev PGR ± SE", "seeds", "proposed by", "family", "method"]
    assert [row["rank"] for row in rows] == view["rank"].to_list()
    assert [row["family"] for row in rows] == view["family"].to_list()
    assert [row["seeds"] for row in rows] == [str(n) for n in view["n_seeds"]]
    assert [row["dev PGR ± SE"] for row in rows] == [
        f"{mean:.3f} ± {se:.3f}"
        for mean, se in view.select("mean_dev_pgr", "se_dev_pgr").iter_rows()
    ]
    assert [row["proposed by"].split(" ", 1)[1] for row in rows] == [
        agents.replace(",", ", ") for agents in view["proposed_by"]
    ]
    cells = " ".join(str(cell) for row in rows for cell in row.values())
    assert not any(method_hash in cells for method_hash in view["method_hash"])

    text = markdown["markdown"]
    report = files.markdown.read_text()
    assert text.startswith(report[: report.index("## Figures")])
    images = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", text)
    assert len(images) == 3 and not re.search(r"\]\(\w+\.png\)", text)
    for image in images:
        raw = base64.b64decode(image.removeprefix("data:image/png;base64,"), validate=True)
        with Image.open(io.BytesIO(raw)) as png:
            assert png.format == "PNG" and png.width >= 600 and png.height >= 400
    assert str(files.markdown) not in text and str(files.research_progress) not in text
    assert text.count(str(files.folder)) == 1
    assert len(text.encode()) < 200_000


def test_studies_of_one_name_publish_under_the_same_keys(report_studies, tmp_path, monkeypatch):
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    keys = []
    with Store(report_studies.db) as store:
        for study_id in (report_studies.first, report_studies.second, report_studies.incomplete):
            _, table, markdown = publish(load_report_data(store, study_id), monkeypatch)
            keys.append((table["key"], markdown["key"]))
            assert f"`{study_id}`" in markdown["description"]
    assert keys == [
        ("leaderboard-tiny-report", "report-tiny-report"),
        ("leaderboard-tiny-report", "report-tiny-report"),
        ("leaderboard-tiny-solo", "report-tiny-solo"),
    ]
