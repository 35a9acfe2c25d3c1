"""The replication study flow end to end, on tiny tasks, under one Prefect test server."""

import json

import polars as pl
import pytest
from db import count_rows

from labgap.config import StudyConfig, load_study_config
from labgap.errors import LabgapInputError
from labgap.quality import QualityGateError
from labgap.store.connection import Store
from labgap.store.schema import TABLES

pytestmark = pytest.mark.usefixtures("prefect_harness")


def tiny_config(tasks, **overrides) -> StudyConfig:
    lab, heldout, production = tasks
    settings = {
        "name": "tiny",
        "lab_task": lab,
        "heldout_tasks": [heldout],
        "production_targets": [production],
        "n_agents": 3,
        "rounds": 2,
        "proposals_per_round": 1,
        "quick_seeds": 2,
        "confirmation_seeds": 3,
        "seeds_per_look": 4,
        "max_seeds": 7,
        "workers": 2,
    }
    return StudyConfig(**{**settings, **overrides})


def row_counts(store: Store) -> dict[str, int]:
    return {table: count_rows(store, table) for table in TABLES}


@pytest.fixture(scope="module")
def finished_study(tiny_study_tasks, tmp_path_factory):
    """One finished tiny study; its caches and reports go to a temporary data folder."""
    from flows.study import replication_study

    folder = tmp_path_factory.mktemp("flow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LABGAP_DATA_DIR", str(folder / "data"))
        db = folder / "study.duckdb"
        config = tiny_config(tiny_study_tasks, study_id="tiny-e2e")
        summary = replication_study(config=config, db_path=str(db))
        yield config, db, summary, folder / "data"


def test_every_table_is_filled_and_consistent(finished_study):
    config, db, summary, _ = finished_study
    assert summary.status == "completed"
    assert summary.overall_verdict in {"replicated", "failed_to_replicate", "inconclusive"}
    with Store(db) as store:
        counts = row_counts(store)
        assert counts["studies"] == 1 and counts["tasks"] == 3 and counts["agents"] == 3
        assert counts["scoring_calls"] == 3 * 2
        assert 3 <= counts["forum_posts"] <= 6
        # lab, targets, versus known, generalisation and production, overall
        assert counts["gap_results"] == 1 + 2 + 1 + 2 + 1
        looks = store.query(
            "SELECT g.target, g.kind, g.n, g.look, g.stop_reason, g.verdict, count(p.seed) AS pairs"
            " FROM gap_results g LEFT JOIN transfer_trials p USING (study_id, target) "
            "WHERE g.kind IN ('lab', 'target') GROUP BY ALL"
        )
        assert counts["transfer_trials"] == sum(looks["pairs"])
        for row in looks.iter_rows(named=True):
            assert row["pairs"] == row["n"] == [3, 7][row["look"] - 1], row
            assert row["stop_reason"] in {"decided", "cap", "no_lab_effect"}, row
            if row["kind"] == "target" and row["stop_reason"] == "decided":
                assert row["verdict"] != "inconclusive", row
            if row["stop_reason"] == "cap":
                assert row["n"] == 7, row
        assert counts["quality_checks"] > 0
        failed = store.query(
            "SELECT * FROM quality_checks WHERE critical AND NOT success AND study_id = 'tiny-e2e'"
        )
        assert failed.height == 0
        # every score an agent received is the mean of the pipeline's own dev trials
        calls = store.query(
            "SELECT c.method_hash, c.dev_pgr, avg(t.pgr_dev) AS mean_pgr, count(*) AS n "
            "FROM scoring_calls c JOIN trials t USING (study_id, method_hash) "
            "JOIN tasks k ON k.study_id = t.study_id AND k.task_hash = t.task_hash "
            "WHERE k.role = 'lab' AND t.phase = 'search' GROUP BY ALL"
        )
        for row in calls.iter_rows(named=True):
            assert row["n"] % config.quick_seeds == 0
            assert row["dev_pgr"] == pytest.approx(row["mean_pgr"])
        board = store.query("SELECT * FROM leaderboard WHERE study_id = 'tiny-e2e' ORDER BY rank")
        assert board.height >= 1 and board["rank"].to_list() == list(range(1, board.height + 1))
        # fresh seeds are disjoint from search seeds
        seeds = store.query("SELECT phase, list(DISTINCT seed) AS s FROM trials GROUP BY phase")
        by_phase = {row["phase"]: set(row["s"]) for row in seeds.iter_rows(named=True)}
        assert not by_phase["search"] & by_phase["confirm"]
        verdicts = store.query("SELECT * FROM verdicts WHERE study_id = 'tiny-e2e'")
        assert set(verdicts["kind"]) == {"lab", "target", "versus_known", "headline", "overall"}
        study = store.query("SELECT * FROM studies").row(0, named=True)
        headlines = dict(
            verdicts.filter(pl.col("kind") == "headline").select("target", "verdict").rows()
        )
        assert headlines == {
            "generalisation": study["generalisation_verdict"],
            "production": study["production_verdict"],
        }
        assert study["design"] == "sequential"
        assert json.loads(study["config_json"])["n_agents"] == 3
        assert study["finished_at"] is not None


def test_rerunning_a_finished_study_adds_no_rows(finished_study):
    from flows.study import replication_study

    config, db, summary, _ = finished_study
    with Store(db) as store:
        before = row_counts(store)
    again = replication_study(config=config, db_path=str(db))
    with Store(db) as store:
        assert row_counts(store) == before
    assert again.overall_verdict == summary.overall_verdict
    assert again.lab_effect == summary.lab_effect


def test_injected_transient_failures_end_with_the_numbers_of_a_clean_run(
    finished_study, monkeypatch, tmp_path
):
    """Every 4th experiment attempt and every 3rd database write fails once, as a lost
    connection or an I/O error would: retries heal both and no number changes."""
    import duckdb

    from flows.study import replication_study
    from labgap.engine.w2s import W2SEngine

    config, first_db, _, _ = finished_study
    run, insert_rows = W2SEngine.run, Store._insert_rows
    calls = {"experiments": 0, "writes": 0}

    def flaky_experiment(self, task, method, seed, limits=None):
        calls["experiments"] += 1
        if calls["experiments"] % 4 == 0:
            raise ConnectionError("injected: connection reset")
        return run(self, task, method, seed)

    def flaky_write(self, cursor, table, frame):
        calls["writes"] += 1
        if calls["writes"] % 3 == 0:
            raise duckdb.IOException("injected: I/O error while writing")
        return insert_rows(self, cursor, table, frame)

    monkeypatch.setattr(W2SEngine, "run", flaky_experiment)
    monkeypatch.setattr(Store, "_insert_rows", flaky_write)
    db = tmp_path / "retry.duckdb"
    threaded = config.model_copy(update={"executor": "thread"})
    replication_study(config=threaded, db_path=str(db))
    assert calls["experiments"] > 8 and calls["writes"] > 30
    columns = "task, method_hash, seed, student_acc_dev, student_acc_test, pgr_dev, pgr_test"
    with Store(first_db) as store:
        expected = store.query(f"SELECT {columns} FROM trials ORDER BY ALL")
        expected_gaps = store.query("SELECT target, delta, verdict FROM gap_results ORDER BY ALL")
    with Store(db) as store:
        assert store.query(f"SELECT {columns} FROM trials ORDER BY ALL").equals(expected)
        gaps = store.query("SELECT target, delta, verdict FROM gap_results ORDER BY ALL")
        assert gaps.equals(expected_gaps)


def test_corrupted_stage_output_fails_its_gate_and_nothing_downstream_is_written(
    finished_study, monkeypatch, tmp_path
):
    import flows.study
    import labgap.store.record

    config, _, _, _ = finished_study
    real_transfer_rows = labgap.store.record.transfer_rows

    def corrupted(*args, **kwargs) -> pl.DataFrame:
        return real_transfer_rows(*args, **kwargs).with_columns(pl.lit(1.7).alias("winner_acc"))

    monkeypatch.setattr(labgap.store.record, "transfer_rows", corrupted)
    db = tmp_path / "corrupt.duckdb"
    with pytest.raises(QualityGateError, match="winner_acc") as error:
        flows.study.replication_study(config=config, db_path=str(db))
    assert "transfer_trials" in str(error.value)
    with Store(db) as store:
        assert count_rows(store, "transfer_trials") == 0
        assert count_rows(store, "gap_results") == 0
        study = store.query("SELECT status, error FROM studies").row(0, named=True)
        assert study["status"] == "failed" and "winner_acc" in study["error"]
        failing = store.query("SELECT * FROM quality_checks WHERE NOT success AND critical")
        assert failing["column_name"].to_list() == ["winner_acc"]


def test_config_errors_are_all_reported_at_once(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("n_agents: 0\nrounds: 500\nalpha: 0.7\nlab_task: nope\nbogus: 1\n")
    with pytest.raises(LabgapInputError) as error:
        load_study_config(path)
    message = str(error.value)
    for field in ("n_agents", "rounds", "alpha", "bogus", "lab_task"):
        assert field in message
    assert "greater than or equal to 1" in message and "less than 0.5" in message


def test_unknown_task_names_list_the_builtins():
    with pytest.raises(LabgapInputError, match="rt-lab"):
        load_study_config(None, lab_task="nope")


def test_profiles_fill_sizes_and_explicit_fields_win():
    quick = StudyConfig(profile="quick")
    assert (quick.n_agents, quick.rounds) == (3, 2)
    assert StudyConfig(profile="quick", n_agents=5).n_agents == 5
    assert StudyConfig().n_agents == 9
    assert quick.resolved_study_id != StudyConfig().resolved_study_id
    assert not set(quick.search_seeds()) & set(quick.fresh_seeds())


def test_report_and_plots_are_written_for_the_study(finished_study):
    from PIL import Image

    _, _, _, data = finished_study
    folder = data / "reports" / "tiny-e2e"
    report = (folder / "report.md").read_text()
    assert "tiny-e2e" in report and "research_progress.png" in report
    for name in ("research_progress", "forest_plot", "gap_trend"):
        path = folder / f"{name}.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width >= 600
