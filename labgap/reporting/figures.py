"""A study report's three figures, drawn from a `ReportData`: nothing here reads the database.

Figures are drawn on bare `Figure` objects with the Agg canvas: no display is needed and no global
pyplot state keeps figures alive in a long-running process. A figure with missing data says what
is missing instead of failing.
"""

import base64
import io
from itertools import groupby
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image

from labgap.reporting.data import ReportData, TrendRow, finite
from labgap.reporting.questions import QUESTIONS

VERDICT_COLOURS = {
    "replicated": "#1a9850",
    "failed_to_replicate": "#d73027",
    "inconclusive": "#878787",
}
NO_VERDICT = "#bdbdbd"
ROLES = {"heldout": ("held-out task", "s"), "production": ("production target", "D")}
"""Each target role's name and marker: the forest plot marks which question a target answers."""
FIGURE_SIZE = (10.0, 5.6)
DPI = 110
TREND_MARKERS = "osD^vPX*"


def _figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    return figure, ax


def save_figure(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=DPI)


def png_data_uri(path: Path) -> str:
    """A saved figure as a data URI, to show where its file cannot be reached (a UI, a mail).

    A 256-colour palette keeps a plot's flat colours and anti-aliasing and takes about a third of
    the bytes, so three figures stay near 100 kB of base64 at full resolution.
    """
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


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


def plot_research_progress(data: ReportData) -> Figure:
    """Best dev PGR so far per agent by round, against vanilla's dev PGR on the same seeds."""
    baseline_dev_pgr = data.baseline_dev_pgr
    figure, ax = _figure(
        f"Research progress: best dev PGR so far, per agent\n{data.study.study_id}"
    )
    ax.set_xlabel("round")
    ax.set_ylabel("best dev PGR so far (mean over search seeds)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_agent = groupby(data.progress, key=lambda point: point.agent_id)
    for index, (agent_id, group) in enumerate(by_agent):
        points = list(group)
        best, rounds, values = None, [], []
        for point in points:
            if finite(point.best_dev_pgr):
                best = point.best_dev_pgr if best is None else max(best, point.best_dev_pgr)
            if best is not None:
                rounds.append(point.round + 1)
                values.append(best)
        direction = points[0].direction
        label = f"agent {agent_id}" + (f" ({direction})" if direction else "")
        ax.plot(rounds, values, marker="o", linewidth=1.8, color=f"C{index % 10}", label=label)
    if finite(baseline_dev_pgr):
        ax.axhline(
            baseline_dev_pgr,
            color="black",
            linestyle="--",
            linewidth=1.4,
            label=f"vanilla baseline ({baseline_dev_pgr:.3f})",
        )
    if not data.progress:
        _note(ax, "no scoring calls recorded yet: the agents' search has not started")
    elif not finite(baseline_dev_pgr):
        _note(ax, "the vanilla baseline has no dev PGR in this study", y=0.05)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False)
    return figure


def plot_forest(data: ReportData) -> Figure:
    """The fresh-seed lab effect and every target's effect with 95% CIs, against 0 and the
    pre-registered margin ρ_min × lab effect that decides "failed to replicate"; targets grouped
    and marked by role, the title giving each question's verdict."""
    study = data.study
    order = list(ROLES)
    targets = sorted(
        data.gaps_of("target"),
        key=lambda row: (order.index(row.role) if row.role in order else len(order), row.target),
    )
    gaps = data.gaps_of("lab") + targets
    verdicts = " · ".join(
        f"{question} {(getattr(study, f'{question}_verdict') or 'not decided').replace('_', ' ')}"
        for question in QUESTIONS
    )
    figure, ax = _figure(
        f"Lab effect and transfer to targets (winner − vanilla, PGR; 95% CI)\n"
        f"{study.study_id}: {verdicts}"
    )
    ax.set_xlabel("effect of the lab winner over vanilla (PGR, test split, fresh seeds)")
    if not gaps:
        ax.set_xticks([])
        ax.set_yticks([])
        _note(ax, f"no gap results yet (status: {study.status}): the study is incomplete")
        return figure
    lab_effect = data.lab.delta if data.lab else None
    positions = list(range(len(gaps), 0, -1))
    labels = []
    for y, row in zip(positions, gaps, strict=True):
        is_lab = row.kind == "lab"
        seeds = f"{row.n} seeds" + (f", {row.stop_reason}" if row.stop_reason else "")
        role, marker = ROLES.get(row.role, ("target", "o"))
        labels.append(
            f"lab effect: {row.target}\n(fresh seeds, {seeds})"
            if is_lab
            else f"{row.target}\n({role}, {seeds})"
        )
        colour = "black" if is_lab else VERDICT_COLOURS.get(row.verdict, NO_VERDICT)
        tag = "reference" if is_lab else (row.verdict or "no verdict").replace("_", " ")
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
        if not finite(row.delta):
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
        if finite(row.ci_adj_low) and finite(row.ci_adj_high):
            ax.plot([row.ci_adj_low, row.ci_adj_high], [y, y], color=colour, linewidth=1)
        if finite(row.ci95_low) and finite(row.ci95_high):
            ax.plot([row.ci95_low, row.ci95_high], [y, y], color=colour, linewidth=4.5)
        else:
            ax.annotate(
                "no CI",
                (row.delta, y),
                xytext=(0, 9),
                textcoords="offset points",
                ha="center",
                fontsize=9,
            )
        ax.plot(
            row.delta,
            y,
            "o" if is_lab else marker,
            color=colour,
            markersize=9,
            markeredgecolor="white",
        )
        if is_lab and finite(row.naive_estimate):
            ax.plot(row.naive_estimate, y, "o", markersize=9, fillstyle="none", color="black")
    ax.axvline(0, color="black", linewidth=1)
    interval = "95% CI (repeated over the planned looks)" if study.design == "sequential" else ""
    handles = [
        Line2D([], [], color="grey", linewidth=4.5, label=interval or "95% CI"),
        Line2D(
            [],
            [],
            color="grey",
            linewidth=1,
            label="decision interval (α split within the question's family)",
        ),
        Line2D(
            [],
            [],
            marker="o",
            color="black",
            fillstyle="none",
            linestyle="none",
            label="naive lab estimate (selected on dev: upward-biased)",
        ),
        *(
            Line2D(
                [],
                [],
                marker=marker,
                color="grey",
                linestyle="none",
                label=f"{name} ({question})",
            )
            for (name, marker), question in zip(ROLES.values(), QUESTIONS, strict=True)
        ),
    ]
    rho_min = study.config.get("rho_min")
    if finite(lab_effect) and finite(rho_min):
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
    ax.set_ylim(0.4, len(gaps) + 0.6)
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=2,
        fontsize=9,
        frameon=False,
    )
    return figure


def plot_gap_trend(data: ReportData) -> Figure:
    """The lab effect and each target's effect across the studies sharing this study's name."""
    name, trend = data.study.name, data.trend
    runs = [next(rows) for _, rows in groupby(trend, key=lambda row: row.run_index)]
    subtitle = (
        "only one study so far: a trend needs two or more"
        if len(runs) == 1
        else "target markers coloured by verdict"
    )
    figure, ax = _figure(
        f"Gap trend across studies named '{name}' (winner − vanilla, PGR, 95% CI)\n{subtitle}"
    )
    ax.set_ylabel("effect over vanilla (PGR)")
    ax.axhline(0, color="black", linewidth=1)
    targets = sorted({row.target for row in trend if row.target is not None})
    width = 0.5 / max(len(targets), 1)
    series = [("lab effect (fresh seeds)", runs, "lab_effect", "lab_ci95_low", "lab_ci95_high")]
    roles = {row.target: ROLES.get(row.role, ("target",))[0] for row in trend}
    series += [
        (
            f"{target} ({roles[target]})",
            [row for row in trend if row.target == target],
            "effect",
            "ci95_low",
            "ci95_high",
        )
        for target in targets
    ]
    handles = []
    for index, (label, rows, value, low, high) in enumerate(series):
        rows = [row for row in rows if getattr(row, value) is not None]
        offset = (index - len(targets) / 2) * width if targets else 0.0
        xs = [row.run_index + offset for row in rows]
        line_colour = "black" if index == 0 else f"C{(index - 1) % 10}"
        marker = TREND_MARKERS[index % len(TREND_MARKERS)]
        ax.plot(
            xs, [getattr(row, value) for row in rows], color=line_colour, linewidth=1.2, alpha=0.7
        )
        for x, row in zip(xs, rows, strict=True):
            row_low, row_high = getattr(row, low), getattr(row, high)
            if finite(row_low) and finite(row_high):
                ax.plot([x, x], [row_low, row_high], color=line_colour, alpha=0.6, linewidth=2)
            colour = "black" if index == 0 else VERDICT_COLOURS.get(row.verdict, NO_VERDICT)
            ax.plot(
                x, getattr(row, value), marker, color=colour, markersize=9, markeredgecolor="black"
            )
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
    for row in runs:
        short = row.study_id.removeprefix(f"{name}-")
        ticks.append(f"{row.started_at:%Y-%m-%d %H:%M}\n{short}\n{_outcome(row)}")
        if row.lab_effect is None and row.target is None:
            ax.text(
                row.run_index,
                0.03,
                "no results yet",
                transform=ax.get_xaxis_transform(),
                ha="center",
                fontsize=9,
                color="#636363",
            )
        if row.study_id == data.study.study_id:
            ax.axvspan(row.run_index - 0.4, row.run_index + 0.4, color="#ffffcc", zorder=0)
    ax.set_xticks([row.run_index for row in runs], ticks, fontsize=8)
    ax.set_xlim(0.4, len(runs) + 0.6)
    ax.set_xlabel("study (started at, id, production verdict); shaded: this report's study")
    if all(row.lab_effect is None for row in trend):
        _note(ax, "no study of this name has gap results yet")
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=9, frameon=False
    )
    return figure


def _outcome(row: TrendRow) -> str:
    """A study's outcome under its tick: the production verdict (the question a trend of one
    name follows); a study recorded before the headline verdicts shows its one verdict, named."""
    if row.production_verdict is not None:
        outcome = f"production {row.production_verdict}"
    elif row.overall_verdict is not None:
        outcome = f"all targets {row.overall_verdict}"
    else:
        outcome = row.status
    return outcome.replace("_", " ")
