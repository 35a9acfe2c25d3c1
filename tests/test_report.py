"""Study reports and the analyst views, on small studies run with the real domain pieces.

The studies are run here without Prefect, step by step as flows/study.py runs them (plan, embedded
agents, guarded scoring, leaderboard, fresh-seed confirmation, transfer, gap analysis, hacking
flags), so the report reads rows exactly as a study writes them. Only the experiments are scripted:
a real trial costs 0.2-6 s here, and a known truth makes the verdicts predictable.
"""

import json
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from labgap.agents.embedded import EmbeddedAgent
from labgap.errors import LabgapInputError
from labgap.gap import analyse_transfer, gap_rows, paired_rows
from labgap.methods import PRESETS, MethodSpec
from labgap.plan import agent_rows, build_plan, study_row, task_rows
from labgap.report import latest_study_id, render_markdown, write_report
from labgap.scoring import GuardedScorer, pick_winner, read_leaderboard, reward_hacking_flags
from labgap.store import Store, to_frame
from labgap.study import StudyConfig
from labgap.taskspec import TaskSpec
from labgap.w2s import TrialResult, pgr

VANILLA = PRESETS["vanilla"]
STARTED = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
TRANSFER = {"tiny-binary": 1.0, "tiny-noisy": 0.9, "tiny-multiclass": -0.6}
"""How much of a method's lab gain each task keeps: one target replicates, one collapses."""
TOP_CLASS_SHARE = 0.55


class ScriptedEngine:
    """TrialResults from a known truth: logconf and aux weight help in the lab, seed noise 0.03."""

    def run(self, task: TaskSpec, method: MethodSpec, seed: int) -> TrialResult:
        noise = random.Random(f"{task.name}|{method.method_hash}|{seed}")
        gain = (0.3 * (method.loss == "logconf") + 0.2 * method.aux_weight) * TRANSFER[task.name]
        weak, ceiling = 0.70 + noise.gauss(0, 0.01), 0.90 + noise.gauss(0, 0.01)
        dev, test = (
            weak + (ceiling - weak) * (0.2 + gain + noise.gauss(0, 0.03)) for _ in range(2)
        )
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
            student_top_class_share=TOP_CLASS_SHARE,
            pgr_dev=pgr(weak, ceiling, dev),
            pgr_test=pgr(weak, ceiling, test),
            wall_seconds=1.5,
            teacher_cached=False,
            dataset_sha256="0" * 64,
        )


def run_study(store: Store, config: StudyConfig, day: int, finish: bool = True) -> str:
    """Plan, agent rounds, scoring and (if `finish`) confirmation, transfer and gap analysis."""
    plan = build_plan(config)
    engine = ScriptedEngine()
    study_id = plan.study_id
    started = pl.lit(STARTED + timedelta(days=day)).alias("started_at")
    store.insert("studies", study_row(plan).with_columns(started))
    store.insert("tasks", task_rows(plan))
    store.insert("agents", agent_rows(plan))

    def trials(planned, methods: list[MethodSpec], seeds: list[int], phase: str):
        results = [engine.run(planned.spec, m, s) for m in methods for s in seeds]
        store.insert("trials", to_frame(results, study_id=study_id, phase=phase, code_version="t"))
        return results

    seeds = config.search_seeds()
    baseline = trials(plan.lab, [VANILLA], seeds, "search")
    baseline_dev = sum(t.pgr_dev for t in baseline) / len(baseline)
    agents = [EmbeddedAgent(a.agent_id, a.direction, a.sampler_seed) for a in plan.agents]
    scorer, forum = GuardedScorer(config.budget), []
    for round_index in range(config.rounds):
        proposals = [p for agent in agents for p in agent.propose(round_index, 1, forum)]
        methods = list({p.method.method_hash: p.method for p in proposals}.values())
        results = trials(plan.lab, methods, seeds, "search")
        calls = []
        for proposal in proposals:
            own = [t for t in results if t.method_hash == proposal.method.method_hash]
            calls.append(scorer.score(proposal.agent_id, round_index, proposal.method, own))
            agents[proposal.agent_id].observe(proposal, calls[-1].dev_pgr, len(seeds))
        store.insert("scoring_calls", to_frame(calls, study_id=study_id))
        posts = [post for agent in agents if (post := agent.finding(round_index))]
        forum.extend(posts)
    if not finish:
        return study_id

    board = read_leaderboard(store, study_id)
    winner_row = pick_winner(board)
    winner = MethodSpec.model_validate_json(winner_row["method_json"])
    frames = []
    for planned in [plan.lab, *plan.targets]:
        phase = "confirm" if planned.role == "lab" else "transfer"
        results = trials(planned, [VANILLA, winner], config.fresh_seeds(), phase)
        role = "lab_confirmation" if planned.role == "lab" else planned.role
        base = [t for t in results if t.method_hash == VANILLA.method_hash]
        challenger = [t for t in results if t.method_hash == winner.method_hash]
        frames.append(paired_rows(study_id, planned.spec.name, role, base, challenger))
    transfer = pl.concat(frames)
    store.insert("transfer_trials", transfer)
    analysis = analyse_transfer(
        transfer,
        plan.lab.spec.name,
        config.alpha,
        config.rho_min,
        board,
        winner_row["method_hash"],
        baseline_dev,
    )
    store.insert("gap_results", gap_rows(study_id, analysis, config.target_roles()))
    hacking = reward_hacking_flags(
        winner_row["mean_dev_pgr"],
        winner_row["mean_dev_pgr"] - baseline_dev,
        analysis.lab.delta,
        TOP_CLASS_SHARE,
        TOP_CLASS_SHARE,
    )
    with store.transaction() as cursor:
        cursor.execute(
            "UPDATE studies SET status = 'completed', overall_verdict = ?, hacking_flags = ?, "
            "finished_at = started_at + INTERVAL 1 HOUR WHERE study_id = ?",
            [analysis.overall_verdict, hacking.model_dump_json(), study_id],
        )
    return study_id


@dataclass(frozen=True)
class Studies:
    db: Path
    first: str
    second: str
    incomplete: str


@pytest.fixture(scope="module")
def studies(tiny_study_tasks, tmp_path_factory) -> Studies:
    """Two finished studies of one name a week apart, and an interrupted one of another name."""
    lab, heldout, production = tiny_study_tasks
    settings = {
        "name": "tiny-report",
        "lab_task": lab,
        "heldout_tasks": [heldout],
        "production_targets": [production],
        "n_agents": 4,
        "rounds": 4,
        "quick_seeds": 2,
        "confirmation_seeds": 4,
    }
    db = tmp_path_factory.mktemp("report") / "studies.duckdb"
    with Store(db) as store:
        first = run_study(store, StudyConfig(**settings, seed=0), day=0)
        second = run_study(store, StudyConfig(**settings, seed=1), day=7)
        solo = StudyConfig(**{**settings, "name": "tiny-solo"}, seed=2)
        incomplete = run_study(store, solo, day=9, finish=False)
    return Studies(db, first, second, incomplete)


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert path.stat().st_size > 10_000, (path, path.stat().st_size)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 600 and image.height >= 400, (path, image.size)


def section(text: str, heading: str) -> list[str]:
    """The lines of one markdown section, up to the next heading of the same level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    return lines[start + 1 : end]


def test_report_of_a_finished_study(studies, data_dir):
    with Store(studies.db) as store:
        files = write_report(store, studies.second)
        gaps = store.query("SELECT * FROM gap_results WHERE study_id = ?", [studies.second])
        study = store.query("SELECT * FROM studies WHERE study_id = ?", [studies.second])
        trials = store.query("SELECT * FROM trials WHERE study_id = ?", [studies.second])
        winner = store.query(
            "SELECT DISTINCT winner_method_hash AS h FROM transfer_trials WHERE study_id = ?",
            [studies.second],
        )["h"][0]
    assert files.folder == data_dir / "reports" / studies.second
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert png.parent == files.folder
        assert_png(png)
    text = files.markdown.read_text()
    assert text.startswith(f"# Study report: {studies.second}")
    assert "**tiny-report**" in text and "status: **completed**" in text
    assert f"**Overall: {study['overall_verdict'][0]}**" in text
    lab = gaps.filter(pl.col("kind") == "lab").row(0, named=True)
    assert f"**{lab['delta']:+.3f}**" in text
    assert f"[{lab['ci95_low']:+.3f}, {lab['ci95_high']:+.3f}]" in text
    assert f"| {lab['naive_estimate']:+.3f} |" in text and "upward-biased" in text
    for row in gaps.filter(pl.col("kind") == "target").iter_rows(named=True):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row['target']} |"))
        assert f"**{row['verdict']}**" in line
        assert f"{row['delta']:+.3f} [{row['ci95_low']:+.3f}, {row['ci95_high']:+.3f}]" in line
        assert f"{row['rho']:.3f}" in line and f"({row['rho_ci_kind']} Fieller set)" in line
        assert json.loads(row["reasons"])[0] in line
    assert f"`{winner}` (confirmed on fresh seeds)" in text and "```json" in text
    board = section(text, "## Leaderboard")
    assert len([ln for ln in board if ln.startswith("| ")]) == 1 + 10
    assert "| 1 | " in board[board.index("|---|---|---|---|---|---|---|") + 1]
    assert "## Reward-hacking checks" in text and "## Idea diversity" in text
    total = trials["wall_seconds"].sum()
    assert f"{trials.height} experiments (trials rows" in text and f"{total:.1f} s" in text
    assert "No LLM calls recorded for this study (embedded agents)." in text
    for name in ("research_progress.png", "forest_plot.png", "gap_trend.png"):
        assert f"]({name})" in text


def test_report_of_an_incomplete_study_says_so(studies, data_dir):
    with Store(studies.db) as store:
        files = write_report(store, studies.incomplete)
        assert render_markdown(store, studies.incomplete) == files.markdown.read_text()
    text = files.markdown.read_text()
    assert "> **Incomplete:** this study has no gap results yet (status `running`)" in text
    assert "**Overall: not decided yet**" in text
    assert "Not measured yet" in text and "No target has been analysed yet." in text
    assert "(leading so far, not yet confirmed)" in text
    assert "Not run yet" in text  # hacking checks
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert_png(png)


def test_missing_values_are_drawn_and_reported(studies, tmp_path):
    """NULL CIs, a target without an estimate, hacking flags and an llm_calls table."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(studies.db, db)
    with Store(db) as store:
        targets = store.query(
            "SELECT target FROM gap_results WHERE study_id = ? AND kind = 'target' ORDER BY target",
            [studies.first],
        )["target"]
        hacking = {"flags": ["predicts_one_class"], "reasons": ["puts 99% in one class"]}
        with store.transaction() as cursor:
            cursor.execute(
                "UPDATE gap_results SET ci95_low = NULL, ci95_high = NULL, ci_adj_low = NULL, "
                "ci_adj_high = NULL WHERE study_id = ? AND target = ?",
                [studies.first, targets[0]],
            )
            cursor.execute(
                "UPDATE gap_results SET delta = NULL, ci95_low = NULL, ci95_high = NULL, "
                "rho = NULL, rho_ci_low = NULL, rho_ci_high = NULL, rho_ci_kind = 'undefined' "
                "WHERE study_id = ? AND target = ?",
                [studies.first, targets[1]],
            )
            cursor.execute(
                "UPDATE studies SET hacking_flags = ? WHERE study_id = ?",
                [json.dumps(hacking), studies.first],
            )
            # the Claude backend's table, created here when this schema predates it
            cursor.execute(
                "CREATE TEMP TABLE calls AS SELECT * FROM (VALUES "
                "(?, 0, 0, 0, 1200, 300, 0.0105), (?, 0, 0, 1, 800, 200, 0.007), "
                "(?, 1, 0, 0, 500, 100, 0.004), ('other-study', 0, 0, 0, 9, 9, 9.0)"
                ") v(study_id, agent_id, round, turn, input_tokens, output_tokens, usd)",
                [studies.first] * 3,
            )
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS llm_calls AS SELECT study_id, agent_id, round, turn, "
                "'m' AS model, input_tokens, output_tokens, 0 AS cache_creation_input_tokens, "
                "0 AS cache_read_input_tokens, 1.0 AS latency_seconds, 'end_turn' AS stop_reason, "
                "usd, 1 AS attempts, NULL AS request_id FROM calls LIMIT 0"
            )
            cursor.execute(
                "INSERT INTO llm_calls BY NAME SELECT *, 'm' AS model, "
                "0 AS cache_creation_input_tokens, 0 AS cache_read_input_tokens, "
                "1.0 AS latency_seconds, 'end_turn' AS stop_reason, 1 AS attempts FROM calls"
            )
        files = write_report(store, studies.first, folder=tmp_path / "out")
    assert files.folder == tmp_path / "out"
    text = files.markdown.read_text()
    rows = {t: next(ln for ln in text.splitlines() if ln.startswith(f"| {t} |")) for t in targets}
    assert "no CI" in rows[targets[0]]
    assert "| — no CI | — undefined (undefined Fieller set) |" in rows[targets[1]]
    assert "- **predicts_one_class**: puts 99% in one class" in text
    assert (
        "| agent | API calls | input tokens | output tokens | cache write | cache read | $ | "
        "experiments | $ per agent-hour |" in text
    )
    llm_rows = [line for line in text.splitlines() if line.startswith(("| 0 | 2 |", "| 1 | 1 |"))]
    assert [row.split(" | ")[2:5] for row in llm_rows] == [
        ["2,000", "500", "0"],
        ["500", "100", "0"],
    ]
    assert "| $0.0175 |" in llm_rows[0] and "| $0.0040 |" in llm_rows[1]
    assert "| **total** | 3 | 2,500 | 600 | 0 | 0 | $0.0215 |" in text
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert_png(png)


def test_unknown_study_id_names_it_and_lists_recent_ones(studies, data_dir):
    with Store(studies.db) as store, pytest.raises(LabgapInputError) as error:
        write_report(store, "no-such-study")
    message = str(error.value)
    assert "'no-such-study'" in message
    assert all(sid in message for sid in (studies.first, studies.second, studies.incomplete))
    assert message.index(studies.incomplete) < message.index(studies.first)
    assert not (data_dir / "reports").exists()


def test_latest_study_id(studies):
    with Store(studies.db) as store:
        assert latest_study_id(store) == studies.incomplete
    with Store(":memory:") as empty:
        assert latest_study_id(empty) is None
        with pytest.raises(LabgapInputError, match="the database has no studies"):
            render_markdown(empty, "anything")


def test_gap_trend_view(studies):
    with Store(studies.db) as store:
        trend = store.query("SELECT * FROM gap_trend ORDER BY name, run_index, target")
        gaps = store.query("SELECT * FROM gap_results")
    report = trend.filter(pl.col("name") == "tiny-report")
    assert report.height == 2 * 2  # two studies x two targets, the lab effect repeated
    assert report["study_id"].to_list() == [studies.first] * 2 + [studies.second] * 2
    assert report["run_index"].to_list() == [1, 1, 2, 2]
    assert set(report["status"]) == {"completed"} and report["rho_min"].to_list() == [0.5] * 4
    for row in report.iter_rows(named=True):
        mine = gaps.filter(pl.col("study_id") == row["study_id"])
        lab = mine.filter(pl.col("kind") == "lab").row(0, named=True)
        target = mine.filter(pl.col("target") == row["target"]).row(0, named=True)
        assert (row["lab_effect"], row["lab_ci95_low"]) == (lab["delta"], lab["ci95_low"])
        assert row["lab_naive_effect"] == lab["naive_estimate"]
        assert (row["effect"], row["ci95_high"]) == (target["delta"], target["ci95_high"])
        assert row["verdict"] == target["verdict"] and row["role"] in {"heldout", "production"}
    solo = trend.filter(pl.col("name") == "tiny-solo").row(0, named=True)
    assert trend.filter(pl.col("name") == "tiny-solo").height == 1
    assert (solo["study_id"], solo["status"], solo["run_index"]) == (
        studies.incomplete,
        "running",
        1,
    )
    assert solo["lab_effect"] is None and solo["target"] is None and solo["verdict"] is None


def test_agent_diversity_view(studies):
    with Store(studies.db) as store:
        view = store.query("SELECT * FROM agent_diversity")
        calls = store.query("SELECT * FROM scoring_calls")
    assert view.height == calls.select("study_id", "agent_id").n_unique() == 3 * 4
    expected = calls.group_by("study_id", "agent_id").agg(
        pl.len().alias("calls"),
        pl.col("family").n_unique().alias("tried"),
        pl.col("dev_pgr").max().alias("best"),
    )
    joined = view.join(expected, on=["study_id", "agent_id"])
    assert joined.height == view.height
    assert (joined["scoring_calls"] == joined["calls"]).all()
    assert (joined["families_tried"] == joined["tried"]).all()
    assert (joined["best_dev_pgr"] == joined["best"]).all()
    assert view["direction"].null_count() == 0
    for study_id, rows in view.group_by("study_id"):
        families = calls.filter(pl.col("study_id") == study_id[0])["family"].n_unique()
        top_counts = rows["top_family"].value_counts()
        assert rows["families_in_study"].unique().to_list() == [families]
        assert rows["agents_in_study"].unique().to_list() == [4]
        assert rows["agents_sharing_top_family"][0] == top_counts["count"].max()
        assert rows["study_top_family"][0] in set(rows["top_family"])


def test_agent_diversity_shows_idea_collapse():
    """Three agents whose best methods share one family: every agent shares the top family."""
    spread = [PRESETS["logconf"], MethodSpec(loss="logconf", aux_weight=0.3), PRESETS["confident"]]
    rows = [
        {
            "study_id": "collapse",
            "agent_id": agent,
            "round": 0,
            "method_hash": method.method_hash,
            "method_json": method.canonical_json(),
            "family": method.family,
            "seeds": "[0, 1]",
            "dev_pgr": 0.5 - 0.1 * index + 0.01 * agent,
            "budget_left": 1,
        }
        for agent in range(3)
        for index, method in enumerate(spread)
    ]
    with Store(":memory:") as store:
        store.insert("scoring_calls", pl.DataFrame(rows))
        view = store.query("SELECT * FROM agent_diversity ORDER BY agent_id")
    assert view["top_family"].to_list() == ["logconf"] * 3
    assert view["families_tried"].to_list() == [2, 2, 2]
    assert view.row(0, named=True)["families_in_study"] == 2
    assert view["agents_sharing_top_family"].to_list() == [3, 3, 3]
    assert view["agents_in_study"].to_list() == [3, 3, 3]
