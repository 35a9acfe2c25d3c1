"""Study reports: a markdown page and three figures per study, read back from DuckDB.

Everything comes from the database, never from a flow's memory, so a report can be written for any
study at any time (finished, failed or still running) and says what is missing instead of
crashing. Figures are drawn on bare `Figure` objects with the Agg canvas: no display is needed and
no global pyplot state keeps figures alive in a long-running process.
"""

import json
import math
from pathlib import Path

import polars as pl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel

from labgap.agents.base import describe_method
from labgap.errors import LabgapInputError
from labgap.methods import MethodSpec
from labgap.paths import data_dir
from labgap.store import Store
from labgap.summary import StudySummary, summarise_study

VERDICT_COLOURS = {
    "replicated": "#1a9850",
    "failed_to_replicate": "#d73027",
    "inconclusive": "#878787",
}
NO_VERDICT = "#bdbdbd"
FIGURE_SIZE = (10.0, 5.6)
DPI = 110
LEADERBOARD_ROWS = 10
TREND_MARKERS = "osD^vPX*"


class ReportFiles(BaseModel):
    """Where one study's report was written."""

    folder: Path
    markdown: Path
    research_progress: Path
    forest_plot: Path
    gap_trend: Path


def latest_study_id(store: Store) -> str | None:
    """The most recently started study, or None for an empty database."""
    latest = store.query("SELECT study_id FROM studies ORDER BY started_at DESC, study_id DESC")
    return latest["study_id"][0] if latest.height else None


def write_report(store: Store, study_id: str, folder: Path | None = None) -> ReportFiles:
    """Write report.md and its three PNGs, by default under `<data dir>/reports/<study id>/`."""
    study = _study(store, study_id)
    folder = Path(folder) if folder else data_dir() / "reports" / study_id
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        folder=folder,
        markdown=folder / "report.md",
        research_progress=folder / "research_progress.png",
        forest_plot=folder / "forest_plot.png",
        gap_trend=folder / "gap_trend.png",
    )
    baseline = summarise_study(store, study_id).baseline_dev_pgr
    _save(plot_research_progress(store, study_id, baseline), files.research_progress)
    _save(plot_forest(store, study), files.forest_plot)
    _save(plot_gap_trend(store, study), files.gap_trend)
    files.markdown.write_text(render_markdown(store, study_id), encoding="utf-8")
    return files


def _study(store: Store, study_id: str) -> dict:
    found = store.query("SELECT * FROM studies WHERE study_id = ?", [study_id])
    if found.height:
        return found.row(0, named=True)
    recent = store.query("SELECT study_id FROM studies ORDER BY started_at DESC LIMIT 5")
    known = ", ".join(recent["study_id"]) if recent.height else "none, the database has no studies"
    raise LabgapInputError(
        f"unknown study id {study_id!r} in {store.path}; most recent study ids: {known}"
    )


def _gaps(store: Store, study_id: str) -> pl.DataFrame:
    """gap_results of one study: the lab row first, then targets by name, then overall."""
    return store.query(
        "SELECT *, json_extract_string(detail_json, '$.role') AS role FROM gap_results "
        "WHERE study_id = ? ORDER BY CASE kind WHEN 'lab' THEN 0 WHEN 'target' THEN 1 ELSE 2 END, "
        "target",
        [study_id],
    )


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def _rho_min(study: dict) -> float | None:
    return json.loads(study["config_json"]).get("rho_min")


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------
def _figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    return figure, ax


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)


def _note(ax: Axes, text: str, y: float = 0.5) -> None:
    """A message drawn in the axes: a figure with missing data must say what is missing."""
    ax.text(
        0.5,
        y,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=10,
        bbox={"boxstyle": "round", "facecolor": "#fff7bc", "edgecolor": "#d9d9d9"},
    )


def plot_research_progress(store: Store, study_id: str, baseline_dev_pgr: float | None) -> Figure:
    """Best dev PGR so far per agent by round, against vanilla's dev PGR on the same seeds."""
    calls = store.query(
        "SELECT c.agent_id, any_value(a.direction) AS direction, c.round, "
        "max(c.dev_pgr) AS best FROM scoring_calls c "
        "LEFT JOIN agents a USING (study_id, agent_id) WHERE c.study_id = ? "
        "GROUP BY c.agent_id, c.round ORDER BY c.agent_id, c.round",
        [study_id],
    )
    figure, ax = _figure(f"Research progress: best dev PGR so far, per agent\n{study_id}")
    ax.set_xlabel("round")
    ax.set_ylabel("best dev PGR so far (mean over search seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for index, (key, rows) in enumerate(calls.group_by("agent_id", maintain_order=True)):
        best, rounds, values = None, [], []
        for row in rows.iter_rows(named=True):
            if _finite(row["best"]):
                best = row["best"] if best is None else max(best, row["best"])
            if best is not None:
                rounds.append(row["round"] + 1)
                values.append(best)
        direction = rows["direction"][0]
        label = f"agent {key[0]}" + (f" ({direction})" if direction else "")
        ax.plot(rounds, values, marker="o", linewidth=1.8, color=f"C{index % 10}", label=label)
    if _finite(baseline_dev_pgr):
        ax.axhline(
            baseline_dev_pgr,
            color="black",
            linestyle="--",
            linewidth=1.4,
            label=f"vanilla baseline ({baseline_dev_pgr:.3f})",
        )
    if calls.height == 0:
        _note(ax, "no scoring calls recorded yet: the agents' search has not started")
    elif not _finite(baseline_dev_pgr):
        _note(ax, "the vanilla baseline has no dev PGR in this study", y=0.05)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return figure


def plot_forest(store: Store, study: dict) -> Figure:
    """The fresh-seed lab effect and every target's effect with 95% CIs, against 0 and the
    pre-registered margin ρ_min × lab effect that decides "failed to replicate"."""
    gaps = _gaps(store, study["study_id"]).filter(pl.col("kind").is_in(["lab", "target"]))
    verdict = study["overall_verdict"] or "not decided"
    figure, ax = _figure(
        f"Lab effect and transfer to targets (winner − vanilla, PGR; 95% CI)\n"
        f"{study['study_id']}: overall {verdict}"
    )
    ax.set_xlabel("effect of the lab winner over vanilla (PGR, test split, fresh seeds)")
    if gaps.height == 0:
        ax.set_xticks([])
        ax.set_yticks([])
        _note(ax, f"no gap results yet (status: {study['status']}): the study is incomplete")
        return figure
    lab = gaps.filter(pl.col("kind") == "lab")
    lab_effect = lab["delta"][0] if lab.height else None
    positions = list(range(gaps.height, 0, -1))
    labels = []
    for y, row in zip(positions, gaps.iter_rows(named=True), strict=True):
        is_lab = row["kind"] == "lab"
        labels.append(
            f"lab effect: {row['target']}\n(fresh seeds, {row['n']} seeds)"
            if is_lab
            else f"{row['target']}\n({row['role'] or 'target'}, {row['n']} seeds)"
        )
        colour = "black" if is_lab else VERDICT_COLOURS.get(row["verdict"], NO_VERDICT)
        tag = "reference" if is_lab else (row["verdict"] or "no verdict").replace("_", " ")
        ax.text(
            1.01,
            y,
            tag,
            transform=ax.get_yaxis_transform(),
            va="center",
            color=colour,
            fontsize=10,
            fontweight="bold",
        )
        if not _finite(row["delta"]):
            ax.text(
                0,
                y,
                "no estimate",
                ha="center",
                va="center",
                fontsize=9,
                color=colour,
                bbox={"facecolor": "white", "edgecolor": colour},
            )
            continue
        if _finite(row["ci_adj_low"]) and _finite(row["ci_adj_high"]):
            ax.plot([row["ci_adj_low"], row["ci_adj_high"]], [y, y], color=colour, linewidth=1)
        if _finite(row["ci95_low"]) and _finite(row["ci95_high"]):
            ax.plot([row["ci95_low"], row["ci95_high"]], [y, y], color=colour, linewidth=4.5)
        else:
            ax.annotate(
                "no CI",
                (row["delta"], y),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        ax.plot(row["delta"], y, "o", color=colour, markersize=9, markeredgecolor="white")
        if is_lab and _finite(row["naive_estimate"]):
            ax.plot(row["naive_estimate"], y, "o", markersize=9, fillstyle="none", color="black")
    ax.axvline(0, color="black", linewidth=1)
    handles = [
        Line2D([], [], color="grey", linewidth=4.5, label="95% CI"),
        Line2D([], [], color="grey", linewidth=1, label="decision interval (level 1 − α/J)"),
        Line2D(
            [],
            [],
            marker="o",
            color="black",
            fillstyle="none",
            linestyle="none",
            label="naive lab estimate (selected on dev: upward-biased)",
        ),
    ]
    rho_min = _rho_min(study)
    if _finite(lab_effect) and _finite(rho_min):
        margin = rho_min * lab_effect
        ax.axvline(margin, color="#4575b4", linestyle="--", linewidth=1.4)
        handles.append(
            Line2D(
                [],
                [],
                color="#4575b4",
                linestyle="--",
                label=f"ρ_min × lab effect = {rho_min:g} × {lab_effect:.3f} = {margin:.3f}",
            )
        )
    else:
        _note(ax, "no lab effect estimate: the ρ_min margin cannot be drawn", y=0.04)
    ax.set_yticks(positions, labels, fontsize=9)
    ax.set_ylim(0.4, gaps.height + 0.6)
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=2,
        fontsize=9,
        frameon=False,
    )
    return figure


def plot_gap_trend(store: Store, study: dict) -> Figure:
    """The lab effect and each target's effect across the studies sharing this study's name."""
    name = study["name"]
    trend = store.query("SELECT * FROM gap_trend WHERE name = ? ORDER BY run_index, target", [name])
    runs = trend.unique("run_index", keep="first", maintain_order=True)
    subtitle = (
        "only one study so far: a trend needs two or more"
        if runs.height == 1
        else "target markers coloured by verdict"
    )
    figure, ax = _figure(
        f"Gap trend across studies named '{name}' (winner − vanilla, PGR, 95% CI)\n{subtitle}"
    )
    ax.set_ylabel("effect over vanilla (PGR)")
    ax.axhline(0, color="black", linewidth=1)
    targets = sorted(t for t in trend["target"].unique() if t is not None)
    width = 0.5 / max(len(targets), 1)
    series = [("lab effect (fresh seeds)", runs, "lab_effect", "lab_ci95_low", "lab_ci95_high")]
    series += [
        (target, trend.filter(pl.col("target") == target), "effect", "ci95_low", "ci95_high")
        for target in targets
    ]
    handles = []
    for index, (label, rows, value, low, high) in enumerate(series):
        rows = rows.filter(pl.col(value).is_not_null())
        offset = (index - len(targets) / 2) * width if targets else 0.0
        xs = [x + offset for x in rows["run_index"]]
        line_colour = "black" if index == 0 else f"C{(index - 1) % 10}"
        marker = TREND_MARKERS[index % len(TREND_MARKERS)]
        ax.plot(xs, rows[value], color=line_colour, linewidth=1.2, alpha=0.7)
        for x, row in zip(xs, rows.iter_rows(named=True), strict=True):
            if _finite(row[low]) and _finite(row[high]):
                ax.plot([x, x], [row[low], row[high]], color=line_colour, alpha=0.6, linewidth=2)
            colour = "black" if index == 0 else VERDICT_COLOURS.get(row["verdict"], NO_VERDICT)
            ax.plot(x, row[value], marker, color=colour, markersize=9, markeredgecolor="black")
        handles.append(
            Line2D(
                [],
                [],
                color=line_colour,
                marker=marker,
                markerfacecolor="white",
                markeredgecolor="black",
                label=label,
            )
        )
    handles += [Patch(color=c, label=v.replace("_", " ")) for v, c in VERDICT_COLOURS.items()]
    ticks = []
    for row in runs.iter_rows(named=True):
        short = row["study_id"].removeprefix(f"{name}-")
        outcome = row["overall_verdict"] or row["status"]
        ticks.append(f"{row['started_at']:%Y-%m-%d %H:%M}\n{short}\n{outcome.replace('_', ' ')}")
        if row["lab_effect"] is None and row["target"] is None:
            ax.text(
                row["run_index"],
                0.03,
                "no results yet",
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=9,
                color="#636363",
            )
        if row["study_id"] == study["study_id"]:
            ax.axvspan(row["run_index"] - 0.4, row["run_index"] + 0.4, color="#ffffcc", zorder=0)
    ax.set_xticks(runs["run_index"], ticks, fontsize=8)
    ax.set_xlim(0.4, runs.height + 0.6)
    ax.set_xlabel("study (started at, id, overall verdict); shaded: this report's study")
    if trend["lab_effect"].is_null().all():
        _note(ax, "no study of this name has gap results yet")
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False
    )
    return figure


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _f(value, signed: bool = False) -> str:
    if not _finite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _interval(low, high) -> str:
    return f"[{_f(low, True)}, {_f(high, True)}]" if _finite(low) or _finite(high) else "no CI"


def _cell(text: str) -> str:
    """Table cells may not contain pipes or line breaks."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _reasons(raw: str | None) -> list[str]:
    return json.loads(raw) if raw else []


def _bullets(items: list[str]) -> list[str]:
    return ["", *(f"- {item}" for item in items)] if items else []


def _rho(row: dict) -> str:
    """ρ with its Fieller set, whose shape (bounded, complement, whole line) the kind names."""
    kind, low, high = row["rho_ci_kind"], row["rho_ci_low"], row["rho_ci_high"]
    if kind == "bounded":
        interval = f"[{_f(low)}, {_f(high)}]"
    elif kind == "complement":
        interval = f"(−∞, {_f(low)}] ∪ [{_f(high)}, ∞)"
    elif kind == "unbounded":
        interval = "(−∞, ∞)"
    else:
        interval = "undefined"
    return f"{_f(row['rho'])} {interval} ({kind or 'no'} Fieller set)"


def render_markdown(store: Store, study_id: str) -> str:
    """The report page: verdicts first, then the evidence, the search, checks and cost."""
    study = _study(store, study_id)
    summary = summarise_study(store, study_id)
    gaps = _gaps(store, study_id)
    config = json.loads(study["config_json"])
    finished = f"{study['finished_at']:%Y-%m-%d %H:%M %Z}" if study["finished_at"] else "—"
    lines = [
        f"# Study report: {study_id}",
        "",
        f"- name: **{study['name']}** (profile `{study['profile']}`, seed {study['seed']}, "
        f"{study['agent_backend']} agents)",
        f"- status: **{study['status']}**; started {study['started_at']:%Y-%m-%d %H:%M %Z}, "
        f"finished {finished}",
        f"- code version `{study['code_version']}`, config hash `{study['config_hash']}`, "
        f"database `{store.path}`",
    ]
    if study["error"]:
        lines.append(f"- error: `{_cell(study['error'])}`")
    if gaps.height == 0:
        lines += [
            "",
            f"> **Incomplete:** this study has no gap results yet (status `{study['status']}`). "
            "The sections below show what exists so far.",
        ]
    lines += _verdict_section(study, summary, config)
    lines += _lab_section(gaps, summary)
    lines += _targets_section(gaps)
    lines += _winner_section(store, study_id)
    lines += _leaderboard_section(store, study_id)
    lines += _diversity_section(store, study_id)
    lines += _hacking_section(study)
    lines += _cost_section(store, study_id, study["agent_backend"])
    lines += [
        "",
        "## Figures",
        "",
        "![Research progress: best dev PGR so far per agent](research_progress.png)",
        "",
        "![Forest plot: lab effect and target effects with 95% CIs](forest_plot.png)",
        "",
        "![Gap trend across studies of the same name](gap_trend.png)",
        "",
    ]
    return "\n".join(lines)


def _verdict_section(study: dict, summary: StudySummary, config: dict) -> list[str]:
    verdict = study["overall_verdict"]
    lines = ["", "## Verdict", ""]
    lines.append(f"**Overall: {verdict}**" if verdict else "**Overall: not decided yet**")
    lines += _bullets(summary.overall_reasons)
    lines += [
        "",
        f"Pre-registered: ρ_min = {config.get('rho_min')} (a target must keep this share of the "
        f"lab effect), family-wise α = {config.get('alpha')}.",
    ]
    return lines


def _lab_section(gaps: pl.DataFrame, summary: StudySummary) -> list[str]:
    lines = ["", "## Lab effect (winner − vanilla, PGR)", ""]
    lab = gaps.filter(pl.col("kind") == "lab")
    if lab.height == 0:
        return lines + ["Not measured yet: the winner has not been confirmed on fresh seeds."]
    row = lab.row(0, named=True)
    detail = json.loads(row["detail_json"])
    lines += [
        "| estimate | effect | 95% CI | seeds |",
        "|---|---|---|---|",
        f"| naive: selected on the dev leaderboard (**upward-biased**, winner's curse) | "
        f"{_f(row['naive_estimate'], True)} | "
        f"{_interval(detail.get('naive_ci_low'), detail.get('naive_ci_high'))} | search seeds |",
    ]
    if _finite(detail.get("hybrid_estimate")):
        lines.append(
            f"| hybrid: corrected for the selection (Andrews, Kitagawa & McCloskey) | "
            f"{_f(detail['hybrid_estimate'], True)} | "
            f"{_interval(detail.get('hybrid_ci_low'), detail.get('hybrid_ci_high'))} | "
            "search seeds |"
        )
    lines += [
        f"| **fresh seeds** (paired, never used in the search) | **{_f(row['delta'], True)}** | "
        f"{_interval(row['ci95_low'], row['ci95_high'])} | {row['n']} |",
        "",
        f"On the fresh seeds' test split the winner reached PGR "
        f"{_f(summary.winner_fresh_test_pgr)} and vanilla {_f(summary.baseline_fresh_test_pgr)}.",
    ]
    return lines + _bullets(_reasons(row["reasons"]))


def _targets_section(gaps: pl.DataFrame) -> list[str]:
    lines = ["", "## Targets", ""]
    targets = gaps.filter(pl.col("kind") == "target")
    if targets.height == 0:
        return lines + ["No target has been analysed yet."]
    lines += [
        "| target | role | seeds | effect [95% CI] | transfer ratio ρ [95% set] | verdict | "
        "reasons |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in targets.iter_rows(named=True):
        lines.append(
            f"| {row['target']} | {row['role'] or '—'} | {row['n']} | "
            f"{_f(row['delta'], True)} {_interval(row['ci95_low'], row['ci95_high'])} | "
            f"{_rho(row)} | **{row['verdict'] or '—'}** | "
            f"{_cell('; '.join(_reasons(row['reasons'])))} |"
        )
    return lines


def _winner_section(store: Store, study_id: str) -> list[str]:
    """The method confirmed on fresh seeds; before confirmation, the leaderboard's leader."""
    lines = ["", "## Winner", ""]
    board = store.query(
        "SELECT l.*, l.method_hash IN (SELECT winner_method_hash FROM transfer_trials t "
        "WHERE t.study_id = l.study_id) AS confirmed FROM leaderboard l WHERE l.study_id = ? "
        "ORDER BY confirmed DESC, l.rank LIMIT 1",
        [study_id],
    )
    if board.height == 0:
        return lines + ["No method has been scored yet."]
    row = board.row(0, named=True)
    method = MethodSpec.model_validate_json(row["method_json"])
    status = "confirmed on fresh seeds" if row["confirmed"] else "leading so far, not yet confirmed"
    lines += [
        f"**{describe_method(method)}**: family `{row['family']}`, hash `{row['method_hash']}` "
        f"({status}); dev PGR {_f(row['mean_dev_pgr'])} ± {_f(row['se_dev_pgr'])} (SE) over "
        f"{row['n_seeds']} search seeds, first proposed in round {row['first_round'] + 1} by "
        f"agent(s) {row['proposed_by']}.",
        "",
        "```json",
        json.dumps(json.loads(row["method_json"]), indent=2, sort_keys=True),
        "```",
    ]
    return lines


def _leaderboard_section(store: Store, study_id: str) -> list[str]:
    lines = ["", f"## Leaderboard (top {LEADERBOARD_ROWS}, dev split, pipeline's own trials)", ""]
    board = store.query(
        "SELECT * FROM leaderboard WHERE study_id = ? ORDER BY rank LIMIT ?",
        [study_id, LEADERBOARD_ROWS],
    )
    if board.height == 0:
        return lines + ["Empty: no method has been scored yet."]
    lines += [
        "| rank | method | family | seeds | dev PGR ± SE | proposed by | first round |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in board.iter_rows(named=True):
        method = describe_method(MethodSpec.model_validate_json(row["method_json"]))
        seeds = f"{row['n_seeds']}" + ("" if row["min_seeds_met"] else " (too few)")
        lines.append(
            f"| {row['rank']} | {_cell(method)} | {row['family']} | {seeds} | "
            f"{_f(row['mean_dev_pgr'])} ± {_f(row['se_dev_pgr'])} | {row['proposed_by']} | "
            f"{row['first_round'] + 1} |"
        )
    return lines


def _diversity_section(store: Store, study_id: str) -> list[str]:
    """Idea collapse: agents that all end on one method family explore less than they could."""
    lines = ["", "## Idea diversity", ""]
    agents = store.query(
        "SELECT * FROM agent_diversity WHERE study_id = ? ORDER BY agent_id", [study_id]
    )
    if agents.height == 0:
        return lines + ["No scoring calls yet."]
    first = agents.row(0, named=True)
    shared, total = first["agents_sharing_top_family"], first["agents_in_study"]
    collapse = total > 1 and shared == total
    lines.append(
        f"{first['families_in_study']} method families tried in the study; {shared} of {total} "
        f"agents' best method is in the most common family `{first['study_top_family']}`"
        + (" (**idea collapse**: every agent converged on one family)." if collapse else ".")
    )
    lines += [
        "",
        "| agent | direction | scoring calls | families tried | best dev PGR | best family |",
        "|---|---|---|---|---|---|",
    ]
    for row in agents.iter_rows(named=True):
        lines.append(
            f"| {row['agent_id']} | {row['direction'] or '—'} | {row['scoring_calls']} | "
            f"{row['families_tried']}: {row['families']} | {_f(row['best_dev_pgr'])} | "
            f"{row['top_family']} |"
        )
    return lines


def _hacking_section(study: dict) -> list[str]:
    lines = ["", "## Reward-hacking checks", ""]
    if not study["hacking_flags"]:
        return lines + ["Not run yet: the checks need the fresh-seed confirmation."]
    hacking = json.loads(study["hacking_flags"])
    flags, reasons = hacking.get("flags", []), hacking.get("reasons", [])
    if not flags:
        return lines + ["No flag raised (dev vs fresh test, one-class predictions, plausibility)."]
    lines += [f"- **{flag}**: {reason}" for flag, reason in zip(flags, reasons, strict=False)]
    lines += [f"- **{flag}**" for flag in flags[len(reasons) :]]
    return lines


def _cost_section(store: Store, study_id: str, backend: str) -> list[str]:
    lines = ["", "## Cost", ""]
    trials = store.query(
        "SELECT phase, count(*) AS experiments, sum(wall_seconds) AS seconds FROM trials "
        "WHERE study_id = ? GROUP BY phase ORDER BY min(created_at)",
        [study_id],
    )
    total = trials["experiments"].sum()
    seconds = trials["seconds"].sum() or 0.0
    phases = ", ".join(f"{r['phase']} {r['experiments']}" for r in trials.iter_rows(named=True))
    lines.append(
        f"{total} experiments (trials rows; by phase: {phases or 'none yet'}), {seconds:.1f} s "
        f"of experiment wall time ({seconds / 3600:.2f} h, summed over workers)."
    )
    lines += ["", *_llm_cost(store, study_id, backend)]
    return lines


def _llm_cost(store: Store, study_id: str, backend: str) -> list[str]:
    """Tokens, $ and $ per agent-hour per agent, from the `cost_per_agent` view."""
    usage = store.query(
        "SELECT agent_id, api_calls, input_tokens, output_tokens, cache_write_tokens, "
        "cache_read_tokens, usd, experiments, usd_per_agent_hour FROM cost_per_agent "
        "WHERE study_id = ? AND api_calls > 0 ORDER BY agent_id",
        [study_id],
    )
    if usage.height == 0:
        return [f"No LLM calls recorded for this study ({backend} agents)."]
    header = ["agent", "API calls", "input tokens", "output tokens", "cache write", "cache read"]
    header += ["$", "experiments", "$ per agent-hour"]
    lines = ["LLM usage per agent:", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "---|" * len(header))
    counts = [
        "api_calls",
        "input_tokens",
        "output_tokens",
        "cache_write_tokens",
        "cache_read_tokens",
    ]
    totals = {
        "agent_id": "**total**",
        **{c: usage[c].sum() for c in [*counts, "usd", "experiments"]},
    }
    for row in [*usage.iter_rows(named=True), {**totals, "usd_per_agent_hour": None}]:
        cells = [str(row["agent_id"])] + [f"{row[c] or 0:,.0f}" for c in counts]
        cells += [
            _dollars(row["usd"]),
            str(row["experiments"]),
            _dollars(row["usd_per_agent_hour"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _dollars(value) -> str:
    """Cents for real money, more digits for the fractions of a cent one call costs."""
    value = float(value or 0)
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"
