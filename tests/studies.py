"""Small studies for the reporting tests, run through the real pipeline with scripted experiments.

The finished studies run through the replication flow itself (Prefect, quality gates, recording);
the interrupted one stops after the search stage, as a killed study would. Only the experiments are
scripted: a real trial costs 0.2-6 s here, and a known truth makes the verdicts predictable.
"""

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from labgap.config import StudyConfig
from labgap.data.tasks import TaskSpec
from labgap.engine.w2s import TrialResult, W2SEngine, pgr
from labgap.methods.spec import MethodSpec
from labgap.plan import build_plan
from labgap.search.embedded import EmbeddedAgent
from labgap.search.scoring import GuardedLab
from labgap.stages import search
from labgap.store.connection import Store
from labgap.store.record import StudyRecorder
from labgap.trials import LocalExecutor, TrialBook

STARTED = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
TRANSFER = {"tiny-binary": 1.0, "tiny-noisy": 0.9, "tiny-multiclass": -0.6}
"""How much of a method's lab gain each task keeps: one target replicates, one collapses."""
TOP_CLASS_SHARE = 0.55


class ScriptedEngine:
    """TrialResults from a known truth: logconf and aux weight help in the lab, seed noise 0.03."""

    def run(self, task: TaskSpec, method: MethodSpec, seed: int, limits=None) -> TrialResult:
        noise = random.Random(f"{task.name}|{method.method_hash}|{seed}")
        loss, aux = getattr(method, "loss", "program"), getattr(method, "aux_weight", 0.25)
        gain = (0.3 * (loss == "logconf") + 0.2 * aux) * TRANSFER[task.name]
        weak, ceiling = 0.70 + noise.gauss(0, 0.01), 0.90 + noise.gauss(0, 0.01)
        dev, test = (
            weak + (ceiling - weak) * (0.2 + gain + noise.gauss(0, 0.03)) for _ in range(2)
        )
        return scripted_trial(task, method, seed, weak, ceiling, dev, test, TOP_CLASS_SHARE, 1.5)


def scripted_trial(
    task: TaskSpec,
    method: MethodSpec,
    seed: int,
    weak: float,
    ceiling: float,
    dev: float,
    test: float,
    top_class_share: float,
    wall_seconds: float,
) -> TrialResult:
    """A trial as the engine would return it, from accuracies a test chose."""
    return TrialResult(
        task=task.name,
        task_hash=task.task_hash,
        method_hash=method.method_hash,
        method_json=method.canonical_json(),
        seed=seed,
        weak_acc_dev=weak,
        weak_acc_test=weak,
        ceiling_acc_dev=ceiling,
        ceiling_acc_test=ceiling,
        student_acc_dev=dev,
        student_acc_test=test,
        student_top_class_share=top_class_share,
        pgr_dev=pgr(weak, ceiling, dev),
        pgr_test=pgr(weak, ceiling, test),
        wall_seconds=wall_seconds,
        teacher_cached=False,
        dataset_sha256="0" * 64,
    )


def finished_study(db: Path, config: StudyConfig, day: int) -> str:
    """A study run by the replication flow, its experiments scripted, dated `day` days in."""
    from flows.study import replication_study

    scripted = ScriptedEngine()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            W2SEngine,
            "run",
            lambda self, task, method, seed, limits=None: scripted.run(task, method, seed),
        )
        summary = replication_study(
            config=config.model_copy(update={"executor": "thread"}), db_path=str(db)
        )
    date_study(db, summary.study_id, day, finished=True)
    return summary.study_id


def interrupted_study(db: Path, config: StudyConfig, day: int) -> str:
    """A study killed after its search: plan and search recorded, nothing confirmed."""
    plan = build_plan(config)
    with Store(db) as store:
        record = StudyRecorder(store, plan.study_id, "t")
        record.study_started(plan)
        record.plan(plan)
        book = TrialBook(LocalExecutor(ScriptedEngine()), [], record.trials)
        lab = GuardedLab(
            plan.lab.spec, book, config.search_seeds, config.budget, [], record.scoring_calls
        )
        agents = [EmbeddedAgent(a.agent_id, a.direction, a.sampler_seed) for a in plan.agents]
        search(plan, agents, lab, book, record, lambda message: None)
    date_study(db, plan.study_id, day, finished=False)
    return plan.study_id


def date_study(db: Path, study_id: str, day: int, finished: bool) -> None:
    """Studies a week apart make a trend; a finished one took an hour."""
    with Store(db) as store, store.transaction() as cursor:
        cursor.execute(
            "UPDATE studies SET started_at = ?, "
            "finished_at = CASE WHEN ? THEN ?::TIMESTAMPTZ + INTERVAL 1 HOUR END "
            "WHERE study_id = ?",
            [STARTED + timedelta(days=day), finished, STARTED + timedelta(days=day), study_id],
        )


@dataclass(frozen=True)
class Studies:
    db: Path
    first: str
    second: str
    incomplete: str


def make_studies(tiny_study_tasks, folder: Path) -> Studies:
    """Two finished studies of one name a week apart, and an interrupted one of another name."""
    lab, heldout, production = tiny_study_tasks
    settings = {
        "name": "tiny-report",
        "lab_task": lab,
        "heldout_tasks": [heldout],
        "production_targets": [production],
        "n_agents": 4,
        "rounds": 3,
        "quick_seeds": 2,
        "confirmation_seeds": 4,
        "seeds_per_look": 4,
        "max_seeds": 8,
        "workers": 2,
    }
    db = folder / "studies.duckdb"
    first = finished_study(db, StudyConfig(**settings, seed=0), day=0)
    second = finished_study(db, StudyConfig(**settings, seed=1), day=7)
    solo = StudyConfig(**{**settings, "name": "tiny-solo"}, seed=2)
    incomplete = interrupted_study(db, solo, day=9)
    return Studies(db, first, second, incomplete)


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > 10_000, (path, path.stat().st_size)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 600 and image.height >= 400, (path, image.size)
