"""What one study run shares between its stages: the plan, the store, the task runner."""

import os

import polars as pl
from prefect import get_run_logger, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from labgap.agents.base import ForumPost
from labgap.experiment import recorded_trials
from labgap.methods import PRESETS, MethodSpec
from labgap.plan import StudyPlan
from labgap.store import Store, to_frame
from labgap.study import StudyConfig
from labgap.taskspec import TaskSpec
from labgap.w2s import TrialResult
from tasks.experiments import init_worker, prepare_reference, run_experiment
from tasks.stages import quality_gate

VANILLA = PRESETS["vanilla"]


class StudyRun:
    def __init__(self, plan: StudyPlan, store: Store, runner):
        self.plan = plan
        self.store = store
        self.runner = runner
        self.config = plan.config
        self.study_id = plan.study_id
        self.logger = get_run_logger()

    def gate(self, stage: str, frame: pl.DataFrame, batch: str = "all") -> None:
        """Validate a stage's output and record every check; a critical failure stops the study."""
        result = quality_gate(stage, frame, self.study_id)
        self.store.insert("quality_checks", to_frame(result.checks, batch=batch))
        result.raise_for_failures()

    def trials(
        self, task: TaskSpec, methods: list[MethodSpec], seeds: list[int], phase: str, batch: str
    ) -> list[TrialResult]:
        """Every (method, seed) trial: recorded ones are read back, the rest run in parallel."""
        done = recorded_trials(self.store, self.study_id, task)
        wanted = [(m, s) for m in methods for s in seeds]
        missing = [(m, s) for m, s in wanted if (m.method_hash, s) not in done]
        if missing:
            self.logger.info(
                f"{task.name}: running {len(missing)} experiment(s), "
                f"{len(wanted) - len(missing)} already recorded"
            )
            missing_seeds = sorted({s for _, s in missing})
            self.runner.map(
                prepare_reference, {"task_spec": unmapped(task), "seed": missing_seeds}
            ).result()
            futures = self.runner.map(
                run_experiment,
                {
                    "task_spec": unmapped(task),
                    "method": [m for m, _ in missing],
                    "seed": [s for _, s in missing],
                },
            )
            fresh = futures.result()
            frame = to_frame(
                fresh, study_id=self.study_id, phase=phase, code_version=self.plan.code_version
            )
            self.gate("trials", frame, batch=batch)
            self.store.insert("trials", frame)
            done.update({(t.method_hash, t.seed): t for t in fresh})
        return [done[(m.method_hash, s)] for m, s in wanted]

    def baseline_dev_pgr(self) -> float:
        """Vanilla's mean dev PGR on the search seeds: the lab baseline agents must beat."""
        seeds = self.config.search_seeds()
        trials = self.trials(self.plan.lab.spec, [VANILLA], seeds, "search", "search-baseline")
        values = [t.pgr_dev for t in trials if t.pgr_dev is not None]
        return sum(values) / len(values) if values else 0.0

    def record_stop(self, agent_id: int, round_index: int, reason: str) -> None:
        with self.store.transaction() as cursor:
            cursor.execute(
                "UPDATE agents SET stop_reason = ?, stopped_round = ? "
                "WHERE study_id = ? AND agent_id = ? AND stop_reason IS NULL",
                [reason, round_index, self.study_id, agent_id],
            )

    def post(self, posts: list[ForumPost]) -> None:
        frame = pl.DataFrame(
            [
                {
                    "study_id": self.study_id,
                    "round": post.round,
                    "agent_id": post.agent_id,
                    "method_hash": post.method.method_hash,
                    "method_json": post.method.canonical_json(),
                    "dev_pgr": post.dev_pgr,
                    "n_seeds": post.n_seeds,
                    "rationale": post.rationale,
                }
                for post in posts
            ],
            schema_overrides={"dev_pgr": pl.Float64},
        )
        self.store.insert("forum_posts", frame)


def make_runner(config: StudyConfig):
    workers = config.workers or os.cpu_count() or 1
    if config.executor == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    return ProcessPoolTaskRunner(max_workers=workers, initializer=init_worker, initargs=(workers,))
