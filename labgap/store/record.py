"""Every write a study makes, in one place: rows are built, gated, then written in a transaction.

The flow process owns one `StudyRecorder` per study and calls it as results complete. A stage's
frame passes its quality gate (the flow supplies the gate) before it is written; every check is
recorded, and a failed critical check raises before anything of that frame reaches its table.
Streamed frames (scoring calls, forum posts) are gated one batch at a time, as they arrive; an
empty batch (an agent that posted nothing this round) writes nothing and is not gated.

After each write the analysts' snapshot is refreshed (`labgap.store.snapshot`): at once when a
stage is recorded (the plan, the search's end, confirmation and transfer, the gap results, the
study's end), throttled while trials, scoring calls and forum posts stream in.
"""

import hashlib
import json
from collections.abc import Callable

import polars as pl

from labgap.engine.w2s import Outcome, TrialFailure, TrialResult
from labgap.plan import StudyPlan
from labgap.programs.method import remember_source
from labgap.quality import SuiteResult
from labgap.search.agent import ForumPost
from labgap.search.hacking import HackingFlags
from labgap.search.scoring import ScoringCall
from labgap.stages import PairedSeed
from labgap.stats.schemas import GapAnalysis
from labgap.store.connection import Store
from labgap.store.rows import (
    agent_rows,
    forum_post_rows,
    gap_rows,
    program_rows,
    study_row,
    task_rows,
    to_frame,
    transfer_rows,
)
from labgap.trials import RecordedTrial

Gate = Callable[[str, pl.DataFrame], SuiteResult]
"""Validates one stage's frame: (stage, frame) -> every check's outcome."""


class StudyRecorder:
    def __init__(self, store: Store, study_id: str, code_version: str, gate: Gate | None = None):
        self.store = store
        self.study_id = study_id
        self.code_version = code_version
        self._gate = gate
        self._programs_written: set[str] = set()

    def study_started(self, plan: StudyPlan) -> str | None:
        """The study row, status `running`. A resumed study (after a crash, a cancellation or a
        failure) keeps its first row and start time and is `running` again until it ends.

        Returns the status it had (None: a new study). A `running` one was left by a process that
        died: this process holds the database's only write lock, so no live owner can remain."""
        with self.store.transaction() as cursor:
            found = cursor.execute(
                "SELECT status FROM studies WHERE study_id = ?", [self.study_id]
            ).fetchall()
            self.store.insert("studies", study_row(plan), cursor)
            cursor.execute(
                "UPDATE studies SET status = 'running', overall_verdict = NULL, "
                "generalisation_verdict = NULL, production_verdict = NULL, design = NULL, "
                "error = NULL, hacking_flags = NULL, finished_at = NULL WHERE study_id = ?",
                [self.study_id],
            )
        self._published(stage=False)
        return found[0][0] if found else None

    def plan(self, plan: StudyPlan) -> None:
        self._write("tasks", task_rows(plan))
        if plan.agents:
            self._write("agents", agent_rows(plan))
        self._published(stage=True)

    def trials(self, phase: str, batch: str, outcomes: list[Outcome]) -> None:
        """A batch of trials: the programs they ran (each source once), the trials that
        succeeded and, apart, those that failed with their errors."""
        self._programs([outcome.method_json for outcome in outcomes], batch)
        constant = {"study_id": self.study_id, "phase": phase, "code_version": self.code_version}
        done = [o for o in outcomes if isinstance(o, TrialResult)]
        if done:
            self._write("trials", to_frame(done, **constant), batch)
        failed = [o for o in outcomes if isinstance(o, TrialFailure)]
        if failed:
            self._write("failed_trials", to_frame(failed, **constant), batch)
        self._published(stage=False)

    def scoring_calls(self, calls: list[ScoringCall]) -> None:
        if not calls:
            return
        first = calls[0]
        batch = f"agent{first.agent_id}-round{first.round}"
        self._write("scoring_calls", to_frame(calls, study_id=self.study_id), batch)
        self._published(stage=False)

    def forum_posts(self, posts: list[ForumPost]) -> None:
        if not posts:
            return
        agents = {post.agent_id for post in posts}
        round_ = f"round{posts[0].round}"
        batch = f"agent{posts[0].agent_id}-{round_}" if len(agents) == 1 else round_
        self._programs([post.method.canonical_json() for post in posts], batch)
        self._write("forum_posts", forum_post_rows(self.study_id, posts), batch)
        self._published(stage=False)

    def agent_stopped(self, agent_id: int, round: int, reason: str) -> None:
        """The first stop of an agent is kept (a replayed round does not move it)."""
        with self.store.transaction() as cursor:
            cursor.execute(
                "UPDATE agents SET stop_reason = ?, stopped_round = ? "
                "WHERE study_id = ? AND agent_id = ? AND stop_reason IS NULL",
                [reason, round, self.study_id, agent_id],
            )
        self._published(stage=False)

    def leaderboard(self, board: pl.DataFrame) -> None:
        """Gated only: the `leaderboard` view shows the same ranking from the recorded trials."""
        self._check("leaderboard", board.with_columns(study_id=pl.lit(self.study_id)), "all")
        self._published(stage=True)

    def transfer_trials(self, pairs: list[PairedSeed], batch: str) -> None:
        self._write("transfer_trials", transfer_rows(self.study_id, pairs), batch)
        self._published(stage=True)

    def gap_results(self, analysis: GapAnalysis, roles: dict[str, str]) -> None:
        self._write("gap_results", gap_rows(self.study_id, analysis, roles))
        self._published(stage=True)

    def finished(
        self,
        status: str,
        analysis: GapAnalysis | None = None,
        error: str | None = None,
        hacking: HackingFlags | None = None,
    ) -> None:
        """The study's end: its status and, when it completed, its verdicts."""
        flags = json.dumps(hacking.model_dump()) if hacking else None
        verdicts = [None, None, None, None]
        if analysis is not None:
            verdicts = [
                analysis.overall_verdict,
                *(
                    h.verdict if (h := analysis.headline(q)) else None
                    for q in ("generalisation", "production")
                ),
                analysis.design,
            ]
        with self.store.transaction() as cursor:
            cursor.execute(
                "UPDATE studies SET status = ?, overall_verdict = ?, generalisation_verdict = ?, "
                "production_verdict = ?, design = ?, error = ?, hacking_flags = ?, "
                "finished_at = current_timestamp WHERE study_id = ?",
                [status, *verdicts, error, flags, self.study_id],
            )
        self._published(stage=True)

    def _programs(self, method_jsons: list[str], batch: str) -> None:
        """The source of every program among these methods, before anything refers to it; each
        program once per recorder (not re-parsed and re-gated with every group of its trials)."""
        programs = program_rows(method_jsons).filter(
            ~pl.col("program_id").is_in(list(self._programs_written))
        )
        if programs.height:
            self._write("method_programs", programs, batch)
            self._programs_written.update(programs["program_id"])

    def _published(self, stage: bool) -> None:
        """Refresh the analysts' snapshot: now after a stage, at most every ~30 s for streamed rows."""
        if self.store.snapshots is None:
            return
        if stage:
            self.store.snapshots.stage_recorded()
        else:
            self.store.snapshots.rows_recorded()

    def _write(self, table: str, frame: pl.DataFrame, batch: str = "all") -> None:
        self._check(table, frame, batch)
        self.store.insert(table, frame)

    def _check(self, stage: str, frame: pl.DataFrame, batch: str) -> None:
        check_frame(self.store, self._gate, stage, frame, batch)


def check_frame(
    store: Store, gate: Gate | None, stage: str, frame: pl.DataFrame, batch: str
) -> None:
    """Gate one frame before it is written: every check is recorded under `batch` plus the
    frame's digest, then a failed critical check raises. Shared by every writer of a study."""
    if gate is None:
        return
    result = gate(stage, frame)
    checks = to_frame(result.checks, batch=f"{batch}-{_digest(frame)}")
    store.insert("quality_checks", checks)
    result.raise_for_failures()


def _digest(frame: pl.DataFrame) -> str:
    """Names a checked frame by its content: two gates of one batch name never share a key, and
    re-checking the same rows (a resumed study) records its checks once."""
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:12]


def recorded_trials(store: Store, study_id: str) -> list[RecordedTrial]:
    """A study's trials with the phase that ran them: what a resumed study does not run again."""
    rows = store.query(
        "SELECT * FROM trials WHERE study_id = ? ORDER BY created_at, task_hash, method_hash, seed",
        [study_id],
    )
    return [
        RecordedTrial(phase=row["phase"], trial=TrialResult.model_validate(row))
        for row in rows.iter_rows(named=True)
    ]


def recorded_failures(store: Store, study_id: str) -> list[TrialFailure]:
    """A study's failed trials: a resumed study does not run them again."""
    rows = store.query(
        "SELECT * FROM failed_trials WHERE study_id = ? ORDER BY task_hash, method_hash, seed",
        [study_id],
    )
    return [TrialFailure.model_validate(row) for row in rows.iter_rows(named=True)]


def load_recorded_programs(store: Store) -> int:
    """Make every recorded program's source known, so recorded trials name their code; returns
    how many there are."""
    rows = store.query("SELECT source FROM method_programs ORDER BY program_id")
    for source in rows["source"]:
        remember_source(source)
    return rows.height


def recorded_scoring_calls(store: Store, study_id: str) -> list[ScoringCall]:
    rows = store.query(
        "SELECT * FROM scoring_calls WHERE study_id = ? "
        "ORDER BY created_at, agent_id, round, method_hash",
        [study_id],
    )
    return [ScoringCall.model_validate(row) for row in rows.iter_rows(named=True)]
