"""Progress lines: stage N of 4, counts, elapsed time and an estimate of what is left."""

from labgap.config import StudyConfig
from labgap.plan import build_plan
from labgap.progress import StudyProgress


def test_lines_say_the_stage_the_counts_and_the_time_left(tiny_study_tasks):
    lab, heldout, production = tiny_study_tasks
    config = StudyConfig(
        lab_task=lab,
        heldout_tasks=[heldout],
        production_targets=[production],
        n_agents=2,
        rounds=2,
        quick_seeds=2,
        confirmation_seeds=3,
    )
    now, lines = [100.0], []
    progress = StudyProgress(build_plan(config), lines.append, clock=lambda: now[0])
    # proposals + vanilla + the known-methods baseline (budget 2) on 2 seeds; then on 3 fresh
    # seeds the winner, vanilla and the known baseline on the lab, winner and vanilla per target
    assert progress.planned == (2 * 2 * 1 + 1 + 2) * 2 + 3 * (3 + 2 * 2)
    progress.stage("search")
    now[0] = 110.0
    progress.experiments("tiny-binary", ran=4, reused=0)
    now[0] = 120.0
    progress.finished("4 scoring calls")
    assert lines[0] == "stage 2/4 search: started; 0 s elapsed"
    assert lines[1] == (
        "stage 2/4 search: tiny-binary: 4 experiment(s) run, 0 read back; 4/35 done; "
        "10 s elapsed, about 78 s left"
    )
    assert lines[2] == "stage 2/4 search: done in 20 s (4 scoring calls)"


def test_a_further_look_adds_its_experiments_to_the_plan(tiny_study_tasks):
    lab, heldout, production = tiny_study_tasks
    config = StudyConfig(
        lab_task=lab, heldout_tasks=[heldout], production_targets=[production], n_agents=2
    )
    lines = []
    progress = StudyProgress(build_plan(config), lines.append, clock=lambda: 0.0)
    planned = progress.planned
    progress.stage("confirm and transfer")
    progress.look(12, "next look: tiny-binary to 10 seeds")
    assert progress.planned == planned + 12
    assert lines[-1] == "stage 3/4 confirm and transfer: next look: tiny-binary to 10 seeds"
