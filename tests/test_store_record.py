"""The study recorder: rows are gated before they are written, and writes are idempotent."""

import polars as pl
import pytest
from db import count_rows
from test_stats_analysis import GOOD, LAB

from labgap.config import StudyConfig
from labgap.engine.w2s import W2SEngine
from labgap.methods.spec import PRESETS
from labgap.plan import build_plan
from labgap.quality import QualityGateError, validate_stage
from labgap.search.agent import ForumPost
from labgap.search.scoring import ScoringCall
from labgap.stats.analysis import analyse_gap
from labgap.stats.schemas import GapConfig
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
        record.trials("search", "round0", trials[:1])
        record.trials("search", "round0", trials[1:])
        record.trials("search", "round0", trials[1:])
        assert count_rows(store, "trials") == 2
        back = recorded_trials(store, plan.study_id)
        assert sorted((r.trial for r in back), key=lambda t: t.seed) == trials
        assert {r.phase for r in back} == {"search"}
        batches = store.query("SELECT DISTINCT stage, batch FROM quality_checks ORDER BY ALL")
        stages = [(stage, batch.rsplit("-", 1)[0]) for stage, batch in batches.rows()]
        assert stages == [
            ("agents", "all"),
            ("tasks", "all"),
            ("trials", "round0"),
            ("trials", "round0"),
        ]


def test_a_resumed_study_is_running_again_until_it_ends(plan, tmp_path):
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1")
        assert record.study_started(plan) is None
        record.finished("cancelled", error="KeyboardInterrupt during stage 2/4 search")
        first = store.query("SELECT started_at FROM studies")["started_at"][0]
        assert record.study_started(plan) == "cancelled"
        row = store.query("SELECT status, error, finished_at, started_at FROM studies").row(0)
        assert row == ("running", None, None, first)
        assert record.study_started(plan) == "running"


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


def scoring_call(**changes) -> ScoringCall:
    fields = {
        "agent_id": 0,
        "round": 1,
        "method_hash": PRESETS["logconf"].method_hash,
        "method_json": PRESETS["logconf"].canonical_json(),
        "family": PRESETS["logconf"].family,
        "seeds": "[0, 1]",
        "dev_pgr": 0.3,
        "budget_left": 1,
    }
    return ScoringCall(**{**fields, **changes})


def test_a_bad_scoring_call_frame_writes_no_row_and_records_the_failing_check(plan, tmp_path):
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1", gate_for(plan.study_id))
        overspent = [scoring_call(), scoring_call(method_hash="other", budget_left=-1)]
        with pytest.raises(QualityGateError, match="budget_left"):
            record.scoring_calls(overspent)
        assert count_rows(store, "scoring_calls") == 0
        failed = store.query(
            "SELECT stage, batch, expectation, unexpected_count FROM quality_checks "
            "WHERE critical AND NOT success"
        )
        [(stage, batch, expectation, unexpected)] = failed.rows()
        assert (stage, expectation, unexpected) == (
            "scoring_calls",
            "expect_column_values_to_be_between:budget_left",
            1,
        )
        assert batch.startswith("agent0-round1-")
        record.scoring_calls([scoring_call()])
        assert count_rows(store, "scoring_calls") == 1
        batches = store.query("SELECT count(DISTINCT batch) AS n FROM quality_checks")["n"][0]
        assert batches == 2  # same agent and round, other rows: another batch


def test_forum_posts_are_gated_and_an_empty_round_writes_nothing(plan, tmp_path):
    post = ForumPost(
        round=0, agent_id=1, method=PRESETS["logconf"], dev_pgr=0.3, n_seeds=2, rationale="ok"
    )
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1", gate_for(plan.study_id))
        record.forum_posts([])
        record.scoring_calls([])
        assert count_rows(store, "quality_checks") == 0
        record.forum_posts([post])
        assert count_rows(store, "forum_posts") == 1
        with pytest.raises(QualityGateError, match="dev_pgr"):
            record.forum_posts([post.model_copy(update={"round": 1, "n_seeds": 0})])
        assert count_rows(store, "forum_posts") == 1


def test_the_first_stop_of_an_agent_is_kept_and_a_study_finishes_once_written(plan, tmp_path):
    with Store(tmp_path / "r.duckdb") as store:
        record = StudyRecorder(store, plan.study_id, "v1")
        record.study_started(plan)
        record.plan(plan)
        record.agent_stopped(1, 2, "budget")
        record.agent_stopped(1, 3, "later")
        analysis = analyse_gap(LAB, [GOOD], GapConfig())
        record.finished("completed", analysis)
        agents = store.query("SELECT agent_id, stop_reason, stopped_round FROM agents ORDER BY 1")
        assert agents.rows() == [(0, None, None), (1, "budget", 2)]
        study = store.query(
            "SELECT status, overall_verdict, generalisation_verdict, production_verdict, design, "
            "finished_at FROM studies"
        )
        assert study.row(0)[:5] == ("completed", "replicated", None, "replicated", "fixed")
        assert study.row(0)[5] is not None
        assert isinstance(store.query("SELECT * FROM trials"), pl.DataFrame)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTimer:
    """Stands in for threading.Timer: the test fires it by hand."""

    def __init__(self, delay, function):
        self.delay, self.function, self.started, self.cancelled = delay, function, False, False

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True


def test_streamed_rows_publish_at_most_every_30_s_and_stages_at_once(plan, tmp_path, monkeypatch):
    from labgap.stages import PairedSeed
    from labgap.store import snapshot

    published: list[float] = []
    real_publish = snapshot.publish_snapshot

    def counting_publish(connection, target):
        published.append(clock.now)
        real_publish(connection, target)

    monkeypatch.setattr(snapshot, "publish_snapshot", counting_publish)
    clock, timers = FakeClock(), []
    trials = [W2SEngine().run(plan.lab.spec, PRESETS["vanilla"], seed) for seed in (0, 1, 2)]
    pair = PairedSeed(
        target=plan.lab.spec.name,
        role="lab_confirmation",
        task_hash=plan.lab.spec.task_hash,
        seed=9,
        baseline_method_hash="a",
        winner_method_hash="b",
        weak_acc=0.6,
        ceiling_acc=0.9,
        baseline_acc=0.7,
        winner_acc=0.8,
        baseline_pgr=0.33,
        winner_pgr=0.67,
    )

    def at(now):
        clock.now = now
        return record

    def timer(delay, function):
        timers.append(FakeTimer(delay, function))
        return timers[-1]

    store = Store(tmp_path / "r.duckdb")
    store.snapshots = snapshot.SnapshotPublisher(
        store.connection, store.snapshots.target, clock=clock, timer=timer
    )
    record = StudyRecorder(store, plan.study_id, "v1")
    at(0).study_started(plan)  # nothing published yet: streamed rows go out at once
    at(1).plan(plan)  # a stage: at once
    assert published == [0, 1]
    at(5).trials("search", "r0", trials[:1])
    at(10).trials("search", "r1", trials[1:2])
    assert published == [0, 1]
    assert [t.delay for t in timers] == [26] and timers[0].started  # one timer, at 1 + 30 s
    at(31).trials("search", "r2", trials[2:])  # 30 s after the last publication
    assert published == [0, 1, 31] and timers[0].cancelled
    at(40).agent_stopped(0, 1, "budget")
    assert published == [0, 1, 31] and [t.delay for t in timers] == [26, 21]
    clock.now = 61  # the timer fires: the last streamed rows reach analysts without a write
    timers[1].function()
    assert published == [0, 1, 31, 61]
    at(62).leaderboard(pl.DataFrame({"rank": [1]}))
    at(62.5).transfer_trials([pair], "confirm")
    at(63).finished("completed", analyse_gap(LAB, [GOOD], GapConfig()))
    assert published == [0, 1, 31, 61, 62, 62.5, 63]
    snapshot_rows = snapshot.read_snapshot(
        store.path,
        "SELECT (SELECT count(*) FROM trials) AS trials, status, "
        "(SELECT stop_reason FROM agents WHERE agent_id = 0) AS stop FROM studies",
    )
    assert snapshot_rows.row(0) == (3, "completed", "budget")
    at(64).agent_stopped(1, 1, "budget")
    assert len(published) == 7
    store.close()  # what is still pending is published on close
    assert published == [0, 1, 31, 61, 62, 62.5, 63, 64]
