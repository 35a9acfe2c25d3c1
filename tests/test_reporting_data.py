"""`load_report_data` and the analyst views it reads, on small studies."""

from pathlib import Path

import polars as pl
import pytest
from studies import Studies

from labgap.errors import LabgapInputError
from labgap.methods.spec import PRESETS, MethodSpec
from labgap.reporting.data import latest_study_id, load_report_data
from labgap.stats.sequential import Schedule
from labgap.store.connection import Store

LEADERBOARD_COLUMNS = [
    "rank",
    "method_hash",
    "n_seeds",
    "mean_dev_pgr",
    "se_dev_pgr",
    "min_seeds_met",
]


@pytest.fixture(scope="module")
def studies(report_studies) -> Studies:
    return report_studies


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def leaderboards(studies: Studies) -> list[tuple[list[dict], list[dict]]]:
    """Per study: the report's leaderboard rows and the `leaderboard` view's, both by rank."""
    pairs = []
    with Store(studies.db) as store:
        for study_id in (studies.first, studies.second, studies.incomplete):
            data = load_report_data(store, study_id)
            view = store.query(
                f"SELECT {', '.join(LEADERBOARD_COLUMNS)} FROM leaderboard "
                "WHERE study_id = ? ORDER BY rank",
                [study_id],
            )
            mine = [row.model_dump(include=set(LEADERBOARD_COLUMNS)) for row in data.leaderboard]
            pairs.append((mine, view.to_dicts()))
    return pairs


def test_report_leaderboard_equals_the_leaderboard_view_to_the_last_bit(studies):
    """The numbers the study decided with (Python) are the analysts' view's, to the last bit."""
    for mine, view in leaderboards(studies):
        assert len(mine) == len(view) > 10
        assert mine == view


def test_report_data_of_a_finished_study(studies):
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
        fresh = store.query(
            "SELECT avg(winner_pgr) AS w, avg(baseline_pgr) AS b, any_value(winner_method_hash) AS h "
            "FROM transfer_trials WHERE study_id = ? AND role = 'lab_confirmation'",
            [studies.second],
        ).row(0, named=True)
        vanilla = store.query(
            "SELECT avg(pgr_dev) AS pgr FROM trials WHERE study_id = ? AND phase = 'search' "
            "AND method_hash = ?",
            [studies.second, PRESETS["vanilla"].method_hash],
        )["pgr"][0]
        calls = store.query(
            "SELECT agent_id, round, max(dev_pgr) AS best FROM scoring_calls WHERE study_id = ? "
            "GROUP BY ALL ORDER BY ALL",
            [studies.second],
        )
        trials = store.query("SELECT * FROM trials WHERE study_id = ?", [studies.second])
    assert data.database == studies.db and data.study.study_id == studies.second
    assert data.study.status == "completed" and data.study.config["quick_seeds"] == 2
    kinds = [row.kind for row in data.gaps]
    assert kinds == ["lab", "target", "target", "versus_known", "headline", "headline", "overall"]
    assert [row.target for row in data.gaps_of("headline")] == ["generalisation", "production"]
    for question, role in (("generalisation", "heldout"), ("production", "production")):
        row = data.headline(question)
        assert row.role == role and row.detail["question"] == question and row.reasons
        assert row.verdict == getattr(data.study, f"{question}_verdict") is not None
        assert row.detail["targets"] == [t.target for t in data.gaps_of("target") if t.role == role]
    assert data.headline("overall") is None and data.study.design == "sequential"
    config = data.study.config
    looks = Schedule(
        start=config["confirmation_seeds"], batch=config["seeds_per_look"], cap=config["max_seeds"]
    ).sizes
    for row in [data.lab, *data.gaps_of("target")]:
        assert row.n == looks[row.look - 1] and row.stop_reason == "decided"
        assert row.detail["ci_level"] > 0.95  # a repeated interval: wider than a one-look 95%
    assert all(row.rho_ci_set is None for row in data.gaps_of("target"))  # bounded sets
    targets = [row.target for row in data.gaps_of("target")]
    assert targets == sorted(targets) and {row.role for row in data.gaps_of("target")} == {
        "heldout",
        "production",
    }
    assert data.lab.reasons == data.lab.detail["reasons"] and data.overall.reasons
    assert data.winner_confirmed and data.winner.method_hash == fresh["h"]
    assert data.winner == data.leaderboard[0]
    assert (data.winner_fresh_test_pgr, data.baseline_fresh_test_pgr) == (fresh["w"], fresh["b"])
    assert data.baseline_dev_pgr == pytest.approx(vanilla, rel=1e-12, abs=1e-12)
    progress = [(p.agent_id, p.round, p.best_dev_pgr) for p in data.progress]
    assert progress == list(calls.iter_rows())
    assert all(p.direction for p in data.progress)
    assert [row.agent_id for row in data.diversity] == [0, 1, 2, 3]
    assert sum(p.experiments for p in data.trials_by_phase) == trials.height
    assert {p.phase for p in data.trials_by_phase} == {"search", "known", "confirm", "transfer"}
    assert [row.api_calls for row in data.agent_costs] == [0, 0, 0, 0]
    assert [row.study_id for row in data.trend] == [studies.first] * 2 + [studies.second] * 2
    assert {(row.production_verdict, row.stop_reason) for row in data.trend} == {
        ("replicated", "decided")
    }
    assert data.previous is not None and data.previous.study_id == studies.first
    assert data.study.hacking is not None and data.study.hacking.flags == []


def test_report_data_of_an_incomplete_study(studies):
    with Store(studies.db) as store:
        data = load_report_data(store, studies.incomplete)
        first = load_report_data(store, studies.first)
    assert data.study.status == "running" and data.gaps == [] and data.lab is None
    assert data.winner == data.leaderboard[0] and not data.winner_confirmed
    assert data.winner_fresh_test_pgr is None and data.baseline_fresh_test_pgr is None
    assert data.baseline_dev_pgr is not None and data.progress and data.diversity
    assert [p.phase for p in data.trials_by_phase] == ["search"]
    assert len(data.trend) == 1 and data.trend[0].target is None
    assert data.previous is None and data.study.hacking is None
    assert first.previous is None  # the first study of its name


def test_unknown_study_id_names_it_and_lists_recent_ones(studies, data_dir):
    with Store(studies.db) as store, pytest.raises(LabgapInputError) as error:
        load_report_data(store, "no-such-study")
    message = str(error.value)
    assert "'no-such-study'" in message
    assert all(sid in message for sid in (studies.first, studies.second, studies.incomplete))
    assert message.index(studies.incomplete) < message.index(studies.first)
    assert not (data_dir / "reports").exists()


def test_latest_study_id(studies):
    with Store(studies.db) as store:
        assert latest_study_id(store) == studies.incomplete
    with Store(":memory:") as empty:
        assert latest_study_id(empty) is None
        with pytest.raises(LabgapInputError, match="the database has no studies"):
            load_report_data(empty, "anything")


def test_gap_trend_view(studies):
    with Store(studies.db) as store:
        trend = store.query("SELECT * FROM gap_trend ORDER BY name, run_index, target")
        gaps = store.query("SELECT * FROM gap_results")
    report = trend.filter(pl.col("name") == "tiny-report")
    assert report.height == 2 * 2  # two studies x two targets, the lab effect repeated
    assert report["study_id"].to_list() == [studies.first] * 2 + [studies.second] * 2
    assert report["run_index"].to_list() == [1, 1, 2, 2]
    assert set(report["status"]) == {"completed"} and report["rho_min"].to_list() == [0.5] * 4
    for row in report.iter_rows(named=True):
        mine = gaps.filter(pl.col("study_id") == row["study_id"])
        lab = mine.filter(pl.col("kind") == "lab").row(0, named=True)
        target = mine.filter(pl.col("target") == row["target"]).row(0, named=True)
        assert (row["lab_effect"], row["lab_ci95_low"]) == (lab["delta"], lab["ci95_low"])
        assert row["lab_naive_effect"] == lab["naive_estimate"]
        assert (row["effect"], row["ci95_high"]) == (target["delta"], target["ci95_high"])
        assert row["verdict"] == target["verdict"] and row["role"] in {"heldout", "production"}
        assert row["stop_reason"] == target["stop_reason"] == "decided"
        assert (row["generalisation_verdict"], row["production_verdict"]) == (
            "failed_to_replicate",
            "replicated",
        )
    solo = trend.filter(pl.col("name") == "tiny-solo").row(0, named=True)
    assert trend.filter(pl.col("name") == "tiny-solo").height == 1
    assert (solo["study_id"], solo["status"], solo["run_index"]) == (
        studies.incomplete,
        "running",
        1,
    )
    assert solo["lab_effect"] is None and solo["target"] is None and solo["verdict"] is None


def test_agent_diversity_view(studies):
    with Store(studies.db) as store:
        view = store.query("SELECT * FROM agent_diversity")
        calls = store.query("SELECT * FROM scoring_calls")
    assert view.height == calls.select("study_id", "agent_id").n_unique() == 3 * 4
    expected = calls.group_by("study_id", "agent_id").agg(
        pl.len().alias("calls"),
        pl.col("family").n_unique().alias("tried"),
        pl.col("dev_pgr").max().alias("best"),
    )
    joined = view.join(expected, on=["study_id", "agent_id"])
    assert joined.height == view.height
    assert (joined["scoring_calls"] == joined["calls"]).all()
    assert (joined["families_tried"] == joined["tried"]).all()
    assert (joined["best_dev_pgr"] == joined["best"]).all()
    assert view["direction"].null_count() == 0
    for study_id, rows in view.group_by("study_id"):
        families = calls.filter(pl.col("study_id") == study_id[0])["family"].n_unique()
        top_counts = rows["top_family"].value_counts()
        assert rows["families_in_study"].unique().to_list() == [families]
        assert rows["agents_in_study"].unique().to_list() == [4]
        assert rows["agents_sharing_top_family"][0] == top_counts["count"].max()
        assert rows["study_top_family"][0] in set(rows["top_family"])


def test_agent_diversity_shows_idea_collapse():
    """Three agents whose best methods share one family: every agent shares the top family."""
    spread = [PRESETS["logconf"], MethodSpec(loss="logconf", aux_weight=0.3), PRESETS["confident"]]
    rows = [
        {
            "study_id": "collapse",
            "agent_id": agent,
            "round": 0,
            "method_hash": method.method_hash,
            "method_json": method.canonical_json(),
            "family": method.family,
            "seeds": "[0, 1]",
            "dev_pgr": 0.5 - 0.1 * index + 0.01 * agent,
            "budget_left": 1,
        }
        for agent in range(3)
        for index, method in enumerate(spread)
    ]
    with Store(":memory:") as store:
        store.insert("scoring_calls", pl.DataFrame(rows))
        view = store.query("SELECT * FROM agent_diversity ORDER BY agent_id")
    assert view["top_family"].to_list() == ["logconf"] * 3
    assert view["families_tried"].to_list() == [2, 2, 2]
    assert view.row(0, named=True)["families_in_study"] == 2
    assert view["agents_sharing_top_family"].to_list() == [3, 3, 3]
    assert view["agents_in_study"].to_list() == [3, 3, 3]
