"""Everything a study's report shows, read from DuckDB in one pass and typed.

`load_report_data` is the only reader behind every report surface (markdown, figures, the CLI
summary, UI artifacts, the verdict-change event): each surface renders a `ReportData` and queries
nothing. The decisions (the leaderboard, the winner, vanilla's dev PGR) are not read from the
analyst views but recomputed from the study's own rows with the functions the search decided with
(`labgap.search.leaderboard`), so the report shows exactly the numbers the study used. A report can
be loaded for any study (finished, failed or still running): what does not exist yet is empty.
"""

import json
import math
from datetime import datetime
from itertools import groupby
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from labgap.config import StudyConfig
from labgap.engine.w2s import TrialResult
from labgap.errors import LabgapInputError
from labgap.methods.kinds import method_from_dump
from labgap.search.hacking import HackingFlags
from labgap.search.leaderboard import rank_methods
from labgap.search.scoring import ScoringCall, mean_dev_pgr
from labgap.stages import BASELINE
from labgap.store.connection import Store

Row = TypeVar("Row", bound=BaseModel)


def finite(value) -> bool:
    """A number that can be drawn and printed (not None, NaN or infinite)."""
    return value is not None and math.isfinite(value)


class StudyRow(BaseModel):
    """One `studies` row."""

    study_id: str
    name: str
    profile: str
    seed: int
    agent_backend: str
    config_json: str
    config_hash: str
    code_version: str
    dataset_sha256s: str
    status: str
    overall_verdict: str | None
    """Both questions together; it answers neither alone (see `generalisation_verdict`)."""
    error: str | None
    hacking_flags: str | None
    sandbox: str | None = None
    generalisation_verdict: str | None = None
    production_verdict: str | None = None
    design: str | None = None
    """`fixed` or `sequential`; None for a study recorded before the headline verdicts."""
    started_at: datetime
    finished_at: datetime | None

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    @property
    def hacking(self) -> HackingFlags | None:
        """The reward-hacking checks' outcome; None until they have run."""
        if not self.hacking_flags:
            return None
        raw = json.loads(self.hacking_flags)
        return HackingFlags(flags=raw.get("flags", []), reasons=raw.get("reasons", []))


class GapRow(BaseModel):
    """One `gap_results` row, its JSON columns decoded."""

    target: str
    kind: str
    role: str | None
    n: int | None
    delta: float | None
    ci95_low: float | None
    ci95_high: float | None
    ci_adj_low: float | None
    ci_adj_high: float | None
    p_value: float | None
    p_holm: float | None
    rho: float | None
    rho_ci_low: float | None
    rho_ci_high: float | None
    rho_ci_kind: str | None
    margin_upper: float | None
    naive_estimate: float | None
    verdict: str | None
    seeds_needed: int | None
    look: int | None = None
    stop_reason: str | None = None
    """Why the task got no more seeds: decided, cap, budget, no_lab_effect or fixed."""
    rho_ci_set: str | None = None
    """The Fieller set in words when it is a union of pieces (`rho_ci_kind = 'union'`)."""
    flags: list[str]
    reasons: list[str]
    detail: dict[str, Any]


class LeaderboardRow(BaseModel):
    """One method on the leaderboard, as `rank_methods` ranked it."""

    rank: int
    method_hash: str
    method_json: str
    family: str
    n_seeds: int
    mean_dev_pgr: float | None
    se_dev_pgr: float | None
    proposed_by: str
    first_round: int
    min_seeds_met: bool
    leak_suspected: bool = False


class ProgressPoint(BaseModel):
    """An agent's best dev PGR among its scoring calls of one round (None if all undefined)."""

    agent_id: int
    direction: str | None
    round: int
    best_dev_pgr: float | None


class DiversityRow(BaseModel):
    """One `agent_diversity` row: what an agent explored, and the study's top family."""

    agent_id: int
    direction: str | None
    scoring_calls: int
    families_tried: int
    families: str
    best_dev_pgr: float | None
    top_family: str | None
    families_in_study: int
    agents_in_study: int
    study_top_family: str | None
    agents_sharing_top_family: int


class PhaseCost(BaseModel):
    """Experiments (trials rows) of one phase, and their summed wall time."""

    phase: str
    experiments: int
    seconds: float | None


class AgentCost(BaseModel):
    """One `cost_per_agent` row: an agent's LLM usage and experiments."""

    agent_id: int
    direction: str | None
    backend: str
    api_calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    usd: float
    experiments: int
    agent_hours: float | None
    usd_per_agent_hour: float | None
    stop_reason: str | None


class TrendRow(BaseModel):
    """One `gap_trend` row: a study of the same name, with one of its targets (if any)."""

    study_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    overall_verdict: str | None
    generalisation_verdict: str | None = None
    production_verdict: str | None = None
    run_index: int
    rho_min: float | None
    lab_seeds: int | None
    lab_effect: float | None
    lab_ci95_low: float | None
    lab_ci95_high: float | None
    lab_naive_effect: float | None
    target: str | None
    role: str | None
    seeds: int | None
    effect: float | None
    ci95_low: float | None
    ci95_high: float | None
    rho: float | None
    verdict: str | None
    stop_reason: str | None = None


class ReportData(BaseModel):
    """What every report surface of one study shows; built by `load_report_data` only."""

    database: Path
    study: StudyRow
    gaps: list[GapRow]
    """The lab row first, then targets by name, the winner against the known methods, the two
    headline rows (generalisation, production) and the overall row."""
    leaderboard: list[LeaderboardRow]
    winner: LeaderboardRow | None
    """The method confirmed on fresh seeds; before confirmation, the leaderboard's leader."""
    winner_confirmed: bool
    baseline_dev_pgr: float | None
    """Vanilla's mean dev PGR over its search trials on the lab task."""
    winner_fresh_test_pgr: float | None
    baseline_fresh_test_pgr: float | None
    progress: list[ProgressPoint]
    """Per agent, then round."""
    diversity: list[DiversityRow]
    trials_by_phase: list[PhaseCost]
    """In the order the phases started."""
    agent_costs: list[AgentCost]
    trend: list[TrendRow]
    """Studies of this study's name, by run index, then target."""
    previous: StudyRow | None
    """The latest completed study of the same name started before this one."""

    def gaps_of(self, kind: str) -> list[GapRow]:
        return [row for row in self.gaps if row.kind == kind]

    @property
    def lab(self) -> GapRow | None:
        return next(iter(self.gaps_of("lab")), None)

    @property
    def overall(self) -> GapRow | None:
        return next(iter(self.gaps_of("overall")), None)

    def headline(self, question: str) -> GapRow | None:
        """The `generalisation` or `production` verdict's row (its detail: `Headline`)."""
        return next((row for row in self.gaps_of("headline") if row.target == question), None)


def latest_study_id(store: Store) -> str | None:
    """The most recently started study, or None for an empty database."""
    latest = store.query("SELECT study_id FROM studies ORDER BY started_at DESC, study_id DESC")
    return latest["study_id"][0] if latest.height else None


def load_report_data(store: Store, study_id: str) -> ReportData:
    """Read one study's report data; an unknown id raises a `LabgapInputError` naming recent ids."""
    study, key = _study(store, study_id), [study_id]
    trial_columns = ", ".join(f"t.{name}" for name in TrialResult.model_fields)
    search_trials = _rows(
        store,
        TrialResult,
        f"SELECT {trial_columns} FROM trials t JOIN tasks k USING (study_id, task_hash) "
        "WHERE t.study_id = ? AND k.role = 'lab' AND t.phase = 'search' "
        "ORDER BY t.method_hash, t.seed",
        key,
    )
    calls = _rows(
        store,
        ScoringCall,
        f"SELECT {', '.join(ScoringCall.model_fields)} FROM scoring_calls WHERE study_id = ? "
        "ORDER BY agent_id, round, method_hash",
        key,
    )
    min_seeds = study.config.get("quick_seeds", StudyConfig.model_fields["quick_seeds"].default)
    candidate = study.config.get("candidate_method")
    given = method_from_dump(candidate).method_hash if candidate else None
    board = rank_methods(search_trials, calls, min_seeds, given=given)
    leaderboard = [LeaderboardRow(**row) for row in board.iter_rows(named=True)]
    fresh = store.query(
        "SELECT avg(winner_pgr) FILTER (role = 'lab_confirmation') AS winner, "
        "avg(baseline_pgr) FILTER (role = 'lab_confirmation') AS baseline, "
        "list(DISTINCT winner_method_hash) AS confirmed FROM transfer_trials WHERE study_id = ?",
        key,
    ).row(0, named=True)
    confirmed = [row for row in leaderboard if row.method_hash in (fresh["confirmed"] or [])]
    directions = dict(
        store.query("SELECT agent_id, direction FROM agents WHERE study_id = ?", key).iter_rows()
    )
    previous = _rows(
        store,
        StudyRow,
        "SELECT * FROM studies WHERE name = ? AND status = 'completed' AND started_at < ? "
        "ORDER BY started_at DESC, study_id DESC LIMIT 1",
        [study.name, study.started_at],
    )
    vanilla = [t for t in search_trials if t.method_hash == BASELINE.method_hash]
    return ReportData(
        database=store.path,
        study=study,
        gaps=_gaps(store, study_id),
        leaderboard=leaderboard,
        winner=(confirmed or leaderboard or [None])[0],
        winner_confirmed=bool(confirmed),
        baseline_dev_pgr=mean_dev_pgr(vanilla),
        winner_fresh_test_pgr=fresh["winner"],
        baseline_fresh_test_pgr=fresh["baseline"],
        progress=_progress(calls, directions),
        diversity=_rows(
            store,
            DiversityRow,
            "SELECT * FROM agent_diversity WHERE study_id = ? ORDER BY agent_id",
            key,
        ),
        trials_by_phase=_rows(
            store,
            PhaseCost,
            "SELECT phase, count(*) AS experiments, sum(wall_seconds) AS seconds FROM trials "
            "WHERE study_id = ? GROUP BY phase ORDER BY min(created_at)",
            key,
        ),
        agent_costs=_rows(
            store,
            AgentCost,
            "SELECT * FROM cost_per_agent WHERE study_id = ? ORDER BY agent_id",
            key,
        ),
        trend=_rows(
            store,
            TrendRow,
            "SELECT * FROM gap_trend WHERE name = ? ORDER BY run_index, target",
            [study.name],
        ),
        previous=previous[0] if previous else None,
    )


def _rows(store: Store, model: type[Row], sql: str, params: list) -> list[Row]:
    return [model(**row) for row in store.query(sql, params).iter_rows(named=True)]


def _study(store: Store, study_id: str) -> StudyRow:
    found = store.query("SELECT * FROM studies WHERE study_id = ?", [study_id])
    if found.height:
        return StudyRow(**found.row(0, named=True))
    recent = store.query("SELECT study_id FROM studies ORDER BY started_at DESC LIMIT 5")
    known = ", ".join(recent["study_id"]) if recent.height else "none, the database has no studies"
    raise LabgapInputError(
        f"unknown study id {study_id!r} in {store.path}; most recent study ids: {known}"
    )


def _gaps(store: Store, study_id: str) -> list[GapRow]:
    frame = store.query(
        "SELECT * FROM gap_results WHERE study_id = ? ORDER BY "
        "CASE kind WHEN 'lab' THEN 0 WHEN 'target' THEN 1 WHEN 'versus_known' THEN 2 "
        "WHEN 'headline' THEN 3 ELSE 4 END, "
        "target",
        [study_id],
    )
    rows = []
    for row in frame.iter_rows(named=True):
        detail = json.loads(row.pop("detail_json"))
        flags, reasons = (json.loads(row.pop(column) or "[]") for column in ("flags", "reasons"))
        rows.append(
            GapRow(**row, role=detail.get("role"), detail=detail, flags=flags, reasons=reasons)
        )
    return rows


def _progress(calls: list[ScoringCall], directions: dict[int, str]) -> list[ProgressPoint]:
    """Each agent's best dev PGR per round (NULL-skipping, as SQL's max), by agent and round."""
    points = []
    ordered = sorted(calls, key=lambda c: (c.agent_id, c.round))
    for (agent_id, round_index), group in groupby(ordered, key=lambda c: (c.agent_id, c.round)):
        scores = [c.dev_pgr for c in group if c.dev_pgr is not None]
        points.append(
            ProgressPoint(
                agent_id=agent_id,
                direction=directions.get(agent_id),
                round=round_index,
                best_dev_pgr=max(scores) if scores else None,
            )
        )
    return points
