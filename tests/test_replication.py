"""The confirmation and transfer looks (`labgap.replication.replicate`) on scripted experiments:
the lab first, decided questions stop, the budget and the cap bound the seeds, and a resumed
study re-derives the same looks without running anything again."""

import threading

import pytest
from studies import scripted_trial

from labgap.config import StudyConfig
from labgap.methods.spec import PRESETS
from labgap.plan import build_plan
from labgap.replication import analyse, replicate
from labgap.stages import given
from labgap.trials import LocalExecutor, RecordedTrial, TrialBook

WINNER = PRESETS["logconf"]


class EffectEngine:
    """Trials whose winner gains `gains[task]` PGR over vanilla, plus or minus `spread[task]` on
    alternate seeds (a known, deterministic seed-to-seed spread); logs (task, seed) as they run."""

    def __init__(self, gains: dict[str, float], spread: dict[str, float]):
        self.gains, self.spread, self.ran = gains, spread, []
        self._lock = threading.Lock()

    def run(self, task, method, seed, limits=None):
        with self._lock:
            self.ran.append((task.name, seed))
        pgr_test = 0.3
        if method.method_hash == WINNER.method_hash:
            sign = 1 if seed % 2 == 0 else -1
            pgr_test += self.gains[task.name] + sign * self.spread[task.name]
        weak, ceiling = 0.6, 0.8
        test = weak + (ceiling - weak) * pgr_test
        return scripted_trial(task, method, seed, weak, ceiling, test, test, 0.55, 0.01)


def setup(tasks, engine, **fields):
    lab, heldout, production = tasks
    sizes = {"confirmation_seeds": 3, "seeds_per_look": 3, "max_seeds": 12}
    config = StudyConfig(
        lab_task=lab,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=1,
        quick_seeds=2,
        **{**sizes, **fields},
    )
    plan = build_plan(config)
    recorded: list[RecordedTrial] = []

    def on_new(phase, batch, outcomes):
        recorded.extend(RecordedTrial(phase=phase, trial=t) for t in outcomes)

    book = TrialBook(LocalExecutor(engine), [], on_new)
    return plan, book, given(plan, book, WINNER), recorded


def gains_of(tasks) -> list[str]:
    return [t.name for t in tasks]


def test_the_lab_gets_seeds_first_and_decided_targets_stop(tiny_study_tasks):
    lab, heldout, production = (t.name for t in tiny_study_tasks)
    engine = EffectEngine(
        {lab: 0.2, heldout: 0.6, production: 0.0}, {lab: 0.15, heldout: 0.05, production: 0.05}
    )
    plan, book, found, _ = setup(tiny_study_tasks, engine)
    replication = replicate(plan, book, found)
    looks = {t.task: t for t in replication.looks}
    assert looks[lab].look == 3 and looks[lab].stop_reason == "decided"
    assert looks[heldout].seeds == 3 and looks[heldout].stop_reason == "decided"
    assert looks[production].look > 1
    # no target ran a second look's seed before the lab's last trial (the lab comes first)
    last_lab = max(i for i, (name, _) in enumerate(engine.ran) if name == lab)
    first_look = set(plan.config.fresh_seeds(3))
    later = [
        i for i, (name, seed) in enumerate(engine.ran) if name != lab and seed not in first_look
    ]
    assert later and min(later) > last_lab
    analysis = analyse(plan, found, replication)
    by_name = {t.name: t for t in analysis.targets}
    assert by_name[heldout].verdict == "replicated" and by_name[heldout].stop_reason == "decided"
    assert analysis.headline("generalisation").verdict == "replicated"
    assert by_name[production].verdict == "failed_to_replicate"
    assert by_name[production].stop_reason == "decided" and by_name[production].n > 3
    assert analysis.headline("production").verdict == "failed_to_replicate"


def test_a_batch_past_the_trial_budget_is_not_run(tiny_study_tasks):
    lab, heldout, production = (t.name for t in tiny_study_tasks)
    engine = EffectEngine(
        {lab: 0.5, heldout: 0.02, production: 0.02}, {lab: 0.05, heldout: 0.2, production: 0.2}
    )
    # first look: lab 3 seeds x 2 arms + 2 targets x 3 x 2 = 18; one more target batch is 6
    plan, book, found, _ = setup(tiny_study_tasks, engine, replication_budget=24)
    replication = replicate(plan, book, found)
    reasons = sorted(t.stop_reason for t in replication.looks[1:])
    assert sum(2 * t.seeds for t in replication.looks) <= 24
    assert "budget" in reasons, replication.looks


def test_the_fixed_design_runs_one_look(tiny_study_tasks):
    lab, heldout, production = (t.name for t in tiny_study_tasks)
    engine = EffectEngine(
        {lab: 0.1, heldout: 0.0, production: 0.0}, dict.fromkeys(gains_of(tiny_study_tasks), 0.2)
    )
    plan, book, found, _ = setup(tiny_study_tasks, engine, design="fixed")
    replication = replicate(plan, book, found)
    assert [(t.seeds, t.stop_reason) for t in replication.looks] == [(3, "fixed")] * 3


def test_a_resumed_study_rederives_its_looks_without_running_anything(tiny_study_tasks):
    lab, heldout, production = (t.name for t in tiny_study_tasks)
    gains = {lab: 0.2, heldout: 0.3, production: 0.05}
    spread = {lab: 0.15, heldout: 0.1, production: 0.1}
    engine = EffectEngine(gains, spread)
    plan, book, found, recorded = setup(tiny_study_tasks, engine)
    first = replicate(plan, book, found)
    again_engine = EffectEngine(gains, spread)
    resumed = TrialBook(LocalExecutor(again_engine), recorded, lambda *args: None)
    second = replicate(plan, resumed, found)
    assert again_engine.ran == []
    assert second == first


@pytest.mark.parametrize("cap", [3, 6])
def test_no_task_gets_more_than_the_cap(tiny_study_tasks, cap):
    lab, heldout, production = (t.name for t in tiny_study_tasks)
    engine = EffectEngine(
        {lab: 0.02, heldout: 0.02, production: 0.02}, {lab: 0.3, heldout: 0.3, production: 0.3}
    )
    plan, book, found, _ = setup(tiny_study_tasks, engine, max_seeds=cap)
    replication = replicate(plan, book, found)
    assert all(t.seeds <= cap for t in replication.looks)
    assert replication.looks[0].stop_reason in {"cap", "decided"}
