"""The replication study flow: plan → agent rounds → confirmation → transfer → gap analysis.

The flow process is the only DuckDB writer. Every stage's output passes its quality gate before it
is written and before the next stage reads it. Re-running a study id resumes it: trials already
recorded are read back, agents are replayed from the same seeds and scores, and no row is written
twice.
"""

import json
import os

import polars as pl
from labgap.agents.embedded import EmbeddedAgent
from prefect import flow, get_run_logger, unmapped
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from labgap.agents.base import Agent, ForumPost, Proposal
from labgap.experiment import recorded_trials
from labgap.gap import gap_rows, paired_rows
from labgap.methods import PRESETS, MethodSpec
from labgap.plan import StudyPlan, agent_rows, study_row, task_rows
from labgap.scoring import GuardedScorer, pick_winner, read_leaderboard, reward_hacking_flags
from labgap.stats import GapAnalysis
from labgap.store import Store, to_frame
from labgap.study import StudyConfig
from labgap.summary import StudySummary, summarise_study
from labgap.taskspec import TaskSpec
from labgap.w2s import TrialResult
from tasks.experiments import init_worker, prepare_reference, run_experiment
from tasks.stages import agent_propose, gap_analysis, generate_tasks, quality_gate

VANILLA = PRESETS["vanilla"]
DEFAULT_CONFIG = StudyConfig()


class StudyRun:
    """What one flow run shares between its stages: the plan, the store and the task runner."""

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
                f"{task.name}: running {len(missing)} experiment(s), {len(wanted) - len(missing)} recorded"
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


def make_agents(plan: StudyPlan) -> list[Agent]:
    return [
        EmbeddedAgent(agent.agent_id, agent.direction, agent.sampler_seed) for agent in plan.agents
    ]


def search(run: StudyRun) -> tuple[pl.DataFrame, float]:
    """Agent rounds on the lab task; returns the leaderboard and vanilla's mean dev PGR."""
    config, store, lab = run.config, run.store, run.plan.lab.spec
    seeds = config.search_seeds()
    baseline = run.trials(lab, [VANILLA], seeds, "search", "search-baseline")
    baseline_values = [t.pgr_dev for t in baseline if t.pgr_dev is not None]
    baseline_dev_pgr = sum(baseline_values) / len(baseline_values) if baseline_values else 0.0
    agents = make_agents(run.plan)
    scorer = GuardedScorer(config.budget)
    forum: list[ForumPost] = []
    for round_index in range(config.rounds):
        proposals: list[Proposal] = []
        for agent in agents:
            left = scorer.budget_left(agent.agent_id)
            if left <= 0:
                record_stop(
                    store, run.study_id, agent.agent_id, round_index, "scoring budget used up"
                )
                continue
            wanted = min(config.proposals_per_round, left)
            proposals.extend(agent_propose(agent, round_index, wanted, forum))
        if not proposals:
            run.logger.info(f"round {round_index}: every agent has stopped")
            break
        methods = list({p.method.method_hash: p.method for p in proposals}.values())
        results = run.trials(lab, methods, seeds, "search", f"search-round{round_index}")
        by_method: dict[str, list[TrialResult]] = {}
        for trial in results:
            by_method.setdefault(trial.method_hash, []).append(trial)
        calls = []
        by_agent = {agent.agent_id: agent for agent in agents}
        for proposal in proposals:
            call = scorer.score(
                proposal.agent_id,
                round_index,
                proposal.method,
                by_method[proposal.method.method_hash],
            )
            calls.append(call)
            by_agent[proposal.agent_id].observe(proposal, call.dev_pgr, len(seeds))
        store.insert("scoring_calls", to_frame(calls, study_id=run.study_id))
        posts = [post for agent in agents if (post := agent.finding(round_index)) is not None]
        store.insert("forum_posts", forum_frame(run.study_id, posts))
        forum.extend(posts)
        best = max((c.dev_pgr for c in calls if c.dev_pgr is not None), default=None)
        run.logger.info(
            f"round {round_index + 1}/{config.rounds}: {len(calls)} method(s) scored, "
            f"best dev PGR this round {best if best is None else round(best, 3)}"
        )
    board = read_leaderboard(store, run.study_id)
    run.gate("scoring", board)
    return board, baseline_dev_pgr


def record_stop(store: Store, study_id: str, agent_id: int, round_index: int, reason: str) -> None:
    with store.transaction() as cursor:
        cursor.execute(
            "UPDATE agents SET stop_reason = ?, stopped_round = ? "
            "WHERE study_id = ? AND agent_id = ? AND stop_reason IS NULL",
            [reason, round_index, study_id, agent_id],
        )


def forum_frame(study_id: str, posts: list[ForumPost]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "study_id": study_id,
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


def confirm_and_transfer(run: StudyRun, winner: MethodSpec) -> pl.DataFrame:
    """Winner vs vanilla on fresh seeds: on the lab task (the lab effect) and on every target."""
    seeds = run.config.fresh_seeds()
    frames = []
    for planned in [run.plan.lab, *run.plan.targets]:
        phase = "confirm" if planned.role == "lab" else "transfer"
        results = run.trials(
            planned.spec, [VANILLA, winner], seeds, phase, f"{phase}-{planned.spec.name}"
        )
        baseline = [t for t in results if t.method_hash == VANILLA.method_hash]
        challenger = [t for t in results if t.method_hash == winner.method_hash]
        role = "lab_confirmation" if planned.role == "lab" else planned.role
        frames.append(paired_rows(run.study_id, planned.spec.name, role, baseline, challenger))
    transfer = pl.concat(frames)
    run.gate("transfer_trials", transfer)
    run.store.insert("transfer_trials", transfer)
    return transfer


def make_runner(config: StudyConfig):
    workers = config.workers or os.cpu_count() or 1
    if config.executor == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    return ProcessPoolTaskRunner(max_workers=workers, initializer=init_worker, initargs=(workers,))


@flow(name="replication-study", log_prints=True)
def replication_study(
    config: StudyConfig = DEFAULT_CONFIG, db_path: str | None = None
) -> StudySummary:
    """Run (or resume) one replication study and return its summary."""
    logger = get_run_logger()
    plan = generate_tasks(config)
    study_id = plan.study_id
    with Store(db_path) as store:
        logger.info(
            f"study {study_id}: {len(plan.agents)} agents, lab {plan.lab.spec.name}, "
            f"{len(plan.targets)} target(s); database {store.path}"
        )
        tasks_frame = task_rows(plan)
        store.insert("studies", study_row(plan))
        try:
            with make_runner(config) as runner:
                run = StudyRun(plan, store, runner)
                run.gate("tasks", tasks_frame)
                store.insert("tasks", tasks_frame)
                store.insert("agents", agent_rows(plan))
                board, baseline_dev_pgr = search(run)
                winner_row = pick_winner(board)
                winner = MethodSpec.model_validate_json(winner_row["method_json"])
                logger.info(
                    f"winner {winner_row['method_hash']} ({winner.family}): "
                    f"dev PGR {winner_row['mean_dev_pgr']:.3f}; confirming on fresh seeds"
                )
                transfer = confirm_and_transfer(run, winner)
            analysis = gap_analysis(
                transfer,
                plan.lab.spec.name,
                config.alpha,
                config.rho_min,
                board,
                winner_row["method_hash"],
                baseline_dev_pgr,
            )
            roles = {t.spec.name: t.role for t in plan.targets}
            gaps = gap_rows(study_id, analysis, roles)
            run.gate("gap_results", gaps)
            store.insert("gap_results", gaps)
            lab_trials = store.query(
                "SELECT * FROM trials WHERE study_id = ? AND phase = 'confirm'", [study_id]
            )
            hacking = hacking_check(
                lab_trials, winner, winner_row["mean_dev_pgr"], baseline_dev_pgr, analysis
            )
            finish(store, study_id, "completed", analysis.overall_verdict, None, hacking)
        except Exception as error:
            finish(store, study_id, "failed", None, f"{type(error).__name__}: {error}", None)
            raise
        return summarise_study(store, study_id)


def hacking_check(
    lab_trials: pl.DataFrame,
    winner: MethodSpec,
    winner_dev_pgr: float,
    baseline_dev_pgr: float,
    analysis: GapAnalysis,
) -> dict:
    own = lab_trials.filter(pl.col("method_hash") == winner.method_hash)
    base = lab_trials.filter(pl.col("method_hash") == VANILLA.method_hash)
    flags = reward_hacking_flags(
        winner_dev_pgr,
        winner_dev_pgr - baseline_dev_pgr,
        analysis.lab.delta,
        float(own["student_top_class_share"].mean()),
        float(base["student_top_class_share"].mean()),
    )
    return flags.model_dump()


def finish(
    store: Store, study_id: str, status: str, verdict: str | None, error: str | None, hacking
) -> None:
    with store.transaction() as cursor:
        cursor.execute(
            "UPDATE studies SET status = ?, overall_verdict = ?, error = ?, hacking_flags = ?, "
            "finished_at = current_timestamp WHERE study_id = ?",
            [status, verdict, error, json.dumps(hacking) if hacking else None, study_id],
        )
