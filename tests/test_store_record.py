"""The study recorder: rows are gated before they are written, and writes are idempotent."""

import polars as pl
import pytest
from db import count_rows

from labgap.config import StudyConfig
from labgap.engine.w2s import W2SEngine
from labgap.methods.spec import PRESETS
from labgap.plan import build_plan
from labgap.quality import QualityGateError, validate_stage
from labgap.store.connection import Store
from labgap.store.record import StudyRecorder, recorded_trials


@pytest.fixture()
def plan(tiny_study_tasks):
    lab, heldout, production = tiny_study_tasks
    config = StudyConfig(
        name="rec",
        lab_task=lab,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=2,
    )
    return build_plan(config)


def gate_for(study_id):
    return lambda stage, frame: validate_stage(stage, frame, study_id)


def test_trials_pass_their_gate_and_read_back_with_their_phase(plan, tmp_path):
    trials = [W2SEngine().run(plan.lab.spec, PRESETS["vanilla"], seed) for seed in (0, 1)]
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1", gate_for(plan.study_id))
        record.study_started(plan)
        record.plan(plan)
        record.trials("search", "round0", trials)
        record.trials("search", "round0-again", trials)
        assert count_rows(store, "trials") == 2
        back = recorded_trials(store, plan.study_id)
        assert sorted((r.trial for r in back), key=lambda t: t.seed) == trials
        assert {r.phase for r in back} == {"search"}
        batches = store.query("SELECT DISTINCT stage, batch FROM quality_checks ORDER BY ALL")
        assert batches.rows() == [
            ("tasks", "all"),
            ("trials", "round0"),
            ("trials", "round0-again"),
        ]


def test_a_failed_gate_writes_the_checks_and_none_of_the_rows(plan, tmp_path):
    trial = W2SEngine().run(plan.lab.spec, PRESETS["vanilla"], 0)
    broken = trial.model_copy(update={"student_acc_test": 1.7})
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1", gate_for(plan.study_id))
        with pytest.raises(QualityGateError, match="student_acc_test"):
            record.trials("search", "bad", [broken])
        assert count_rows(store, "trials") == 0
        failed = store.query("SELECT column_name FROM quality_checks WHERE NOT success")
        assert "student_acc_test" in failed["column_name"].to_list()


def test_the_first_stop_of_an_agent_is_kept_and_a_study_finishes_once_written(plan, tmp_path):
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1")
        record.study_started(plan)
        record.plan(plan)
        record.agent_stopped(1, 2, "budget")
        record.agent_stopped(1, 3, "later")
        record.finished("completed", "replicated")
        agents = store.query("SELECT agent_id, stop_reason, stopped_round FROM agents ORDER BY 1")
        assert agents.rows() == [(0, None, None), (1, "budget", 2)]
        study = store.query("SELECT status, overall_verdict, finished_at FROM studies")
        assert study.row(0)[:2] == ("completed", "replicated") and study.row(0)[2] is not None
        assert isinstance(store.query("SELECT * FROM trials"), pl.DataFrame)
