"""Study reports: a markdown page, the same page as standalone HTML, and three figures per study.

Everything comes from the database through `load_report_data`, never from a flow's memory, so a
report can be written for any study at any time (finished, failed or still running) and says what
is missing instead of crashing. Nothing here queries anything. Text from the database goes through
`labgap.reporting.markup`, since the Prefect UI renders this markdown with HTML enabled.
"""

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from labgap.methods.kinds import describe_recorded
from labgap.paths import data_dir
from labgap.reporting.cost import cost_section
from labgap.reporting.data import GapRow, ReportData, StudyRow, finite
from labgap.reporting.figures import (
    plot_forest,
    plot_gap_trend,
    plot_research_progress,
    png_data_uri,
    save_figure,
)
from labgap.reporting.html import render_html
from labgap.reporting.known import known_methods_section
from labgap.reporting.markup import code, fence, text
from labgap.reporting.questions import BOTH, QUESTIONS, REPEATED_INTERVALS, answer, seeds_text
from labgap.stats.sequential import Schedule

LEADERBOARD_ROWS = 10
FIGURES = {
    "research_progress": (
        plot_research_progress,
        "Research progress: best dev PGR so far per agent",
    ),
    "forest_plot": (plot_forest, "Forest plot: lab effect and target effects with 95% CIs"),
    "gap_trend": (plot_gap_trend, "Gap trend across studies of the same name"),
}
"""Each figure's `ReportFiles` field (and file name without .png), drawing and caption."""


class ReportFiles(BaseModel):
    """Where one study's report was written."""

    folder: Path
    markdown: Path
    html: Path
    """The report with its figures inlined: one file to open in a browser or send."""
    research_progress: Path
    forest_plot: Path
    gap_trend: Path


def write_report(data: ReportData, folder: Path | None = None) -> ReportFiles:
    """Write report.md, report.html and the three PNGs, by default under
    `<data dir>/reports/<study id>/`."""
    folder = Path(folder) if folder else data_dir() / "reports" / data.study.study_id
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(
        folder=folder,
        markdown=folder / "report.md",
        html=folder / "report.html",
        **{name: folder / f"{name}.png" for name in FIGURES},
    )
    for name, (plot, _) in FIGURES.items():
        save_figure(plot(data), getattr(files, name))
    files.markdown.write_text(render_markdown(data), encoding="utf-8")
    page = render_html(
        render_markdown(data, inline_figures(files)), f"Study report: {data.study.study_id}"
    )
    files.html.write_text(page, encoding="utf-8")
    return files


def inline_figures(files: ReportFiles) -> dict[str, str]:
    """Each written figure as a data URI, for `render_markdown` where the PNGs cannot be reached."""
    return {name: png_data_uri(getattr(files, name)) for name in FIGURES}


def _f(value, signed: bool = False) -> str:
    if not finite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _interval(low, high) -> str:
    return f"[{_f(low, True)}, {_f(high, True)}]" if finite(low) or finite(high) else "no CI"


def _setting(value) -> str:
    """A pre-registered setting from the config: a number as short as it is exact."""
    return f"{value:g}" if isinstance(value, int | float) else text(value)


def _agents(proposed_by: str) -> str:
    """`rank_methods`' comma-joined agent ids, as words."""
    if proposed_by == "given":
        return "the user (the method under test, given instead of a search)"
    ids = [agent for agent in proposed_by.split(",") if agent]
    if not ids:
        return "—"
    return ("agent " if len(ids) == 1 else "agents ") + ", ".join(text(agent) for agent in ids)


def _bullets(items: list[str]) -> list[str]:
    return ["", *(f"- {text(item)}" for item in items)] if items else []


def _table(rows: list[dict]) -> list[str]:
    """A markdown table of rows sharing their keys; cells must be escaped already."""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return lines + ["| " + " | ".join(str(cell) for cell in row.values()) + " |" for row in rows]


def _rho(row: GapRow) -> str:
    """ρ with its Fieller set, whose shape (bounded, complement, a union of pieces, the whole
    line) the kind names."""
    kind, low, high = row.rho_ci_kind, row.rho_ci_low, row.rho_ci_high
    if kind == "bounded":
        interval = f"[{_f(low)}, {_f(high)}]"
    elif kind == "complement":
        interval = f"(−∞, {_f(low)}] ∪ [{_f(high)}, ∞)"
    elif kind == "union":
        interval = text(row.rho_ci_set or "a union of pieces")
    elif kind == "unbounded":
        interval = "(−∞, ∞)"
    else:
        interval = "undefined"
    return f"{_f(row.rho)} {interval} ({text(kind or 'no')} Fieller set)"


def render_markdown(data: ReportData, figures: Mapping[str, str] | None = None) -> str:
    """The report page: the two headline verdicts first, then the evidence, the search, checks
    and cost.

    `figures` maps a `FIGURES` name to its image source; by default the PNG's file name, which
    resolves next to report.md only (`inline_figures` gives sources that show anywhere).
    """
    study = data.study
    finished = f"{study.finished_at:%Y-%m-%d %H:%M %Z}" if study.finished_at else "—"
    searched_by = (
        "the method under test was given: no agent search"
        if study.config.get("candidate_method")
        else f"{text(study.agent_backend)} agents"
    )
    lines = [
        f"# Study report: {text(study.study_id)}",
        "",
        f"- name: **{text(study.name)}** (profile {code(study.profile)}, seed {study.seed}, "
        f"{searched_by})",
        f"- status: **{text(study.status)}**; started {study.started_at:%Y-%m-%d %H:%M %Z}, "
        f"finished {finished}",
        f"- code version {code(study.code_version)}, config hash {code(study.config_hash)}, "
        f"database {code(data.database)}",
    ]
    if study.sandbox:
        lines.append(f"- program sandbox: {text(study.sandbox)}")
    if study.error:
        lines.append(f"- error: {code(study.error)}")
    if not data.gaps:
        lines += [
            "",
            f"> **Incomplete:** this study has no gap results yet (status {code(study.status)}). "
            "The sections below show what exists so far.",
        ]
    lines += _verdict_section(data)
    lines += _lab_section(data)
    lines += _targets_section(data.gaps_of("target"), data.study.design)
    lines += _winner_section(data)
    lines += known_methods_section(data.gaps_of("versus_known"))
    lines += _leaderboard_section(data)
    lines += _diversity_section(data)
    lines += _hacking_section(study)
    lines += cost_section(data)
    lines += ["", "## Figures", ""]
    for name, (_, caption) in FIGURES.items():
        source = figures[name] if figures else f"{name}.png"
        lines += [f"![{caption}]({source})", ""]
    return "\n".join(lines)


def _verdict_section(data: ReportData) -> list[str]:
    """Both headline verdicts, each with its question and family; the overall verdict only as
    both questions together."""
    study, config = data.study, data.study.config
    lines = ["", "## Headline verdicts", ""]
    lines += [
        "Two questions, each over its own family of targets (α split within the family): a "
        "question is replicated only if every target in its family replicated, failed if any "
        "failed, else inconclusive.",
        "",
    ]
    for question, label in QUESTIONS.items():
        verdict, reasons = answer(data, question)
        row = data.headline(question)
        family = f" ({text(', '.join(row.detail.get('targets', [])))})" if row else ""
        lines.append(f"- **{text(label)}: {text(verdict or '—')}**{family}")
        lines += [f"  - {text(reason)}" for reason in reasons]
    if study.generalisation_verdict and study.production_verdict:
        lines += [
            "",
            f"{BOTH.capitalize()}: {text(study.overall_verdict)} (replicated only if both are; it "
            "answers neither question alone).",
        ]
    lines += [
        "",
        f"Pre-registered: ρ_min = {_setting(config.get('rho_min'))} (a target must keep this share "
        f"of the lab effect), family-wise α = {_setting(config.get('alpha'))} per question.",
    ]
    return lines + _design(data)


def _design(data: ReportData) -> list[str]:
    """The pre-registered sequential design's looks, and what its intervals mean."""
    config = data.study.config
    if config.get("design") != "sequential":
        return []
    schedule = Schedule(
        start=config["confirmation_seeds"], batch=config["seeds_per_look"], cap=config["max_seeds"]
    )
    sizes = ", ".join(str(n) for n in schedule.sizes)
    budget = config.get("replication_budget")
    return [
        "",
        f"Sequential design: each task gets fresh paired seeds in looks of {sizes} seeds until its "
        "question is decided, at its seed cap"
        + (f" or when the study's budget of {budget} trials is spent" if budget else "")
        + f"; each task's seeds say why it stopped. {REPEATED_INTERVALS}: each is taken at the "
        "nominal level of its look, chosen so that the intervals of all looks cover together "
        "with probability 95%.",
    ]


def _seeds(row: GapRow, design: str | None) -> str:
    return seeds_text(row.n, row.stop_reason, row.look if design == "sequential" else None)


def _lab_section(data: ReportData) -> list[str]:
    lines = ["", "## Lab effect (winner − vanilla, PGR)", ""]
    row = data.lab
    if row is None:
        return lines + ["Not measured yet: the winner has not been confirmed on fresh seeds."]
    detail = row.detail
    lines += [
        "| estimate | effect | 95% CI | seeds |",
        "|---|---|---|---|",
        f"| naive: selected on the dev leaderboard (**upward-biased**, winner's curse) | "
        f"{_f(row.naive_estimate, True)} | "
        f"{_interval(detail.get('naive_ci_low'), detail.get('naive_ci_high'))} | search seeds |",
    ]
    if finite(detail.get("hybrid_estimate")):
        lines.append(
            "| hybrid: corrected for picking the top of the dev leaderboard (Andrews, Kitagawa & "
            "McCloskey; SE pooled over the candidates and vanilla) | "
            f"{_f(detail['hybrid_estimate'], True)} | "
            f"{_interval(detail.get('hybrid_ci_low'), detail.get('hybrid_ci_high'))} | "
            "search seeds |"
        )
    elif finite(row.naive_estimate):
        lines.append("| hybrid: corrected for the selection | not shown: see below | — | — |")
    lines += [
        f"| **fresh seeds** (paired, never used in the search) | **{_f(row.delta, True)}** | "
        f"{_interval(row.ci95_low, row.ci95_high)} | {_seeds(row, data.study.design)} |",
        "",
        f"On the fresh seeds' test split the winner reached PGR "
        f"{_f(data.winner_fresh_test_pgr)} and vanilla {_f(data.baseline_fresh_test_pgr)}.",
    ]
    return lines + _bullets(row.reasons)


def _targets_section(targets: list[GapRow], design: str | None) -> list[str]:
    lines = ["", "## Targets", ""]
    if not targets:
        return lines + ["No target has been analysed yet."]
    if design == "sequential":
        levels = ", ".join(
            f"{text(row.target)} {row.detail['ci_level']:.2%}"
            for row in targets
            if finite(row.detail.get("ci_level"))
        )
        lines += [
            "Seeds: fresh paired seeds at the task's last look and why it got no more "
            f"(decided, cap, budget, no_lab_effect). {REPEATED_INTERVALS}; nominal level at each "
            f"target's look: {levels}.",
            "",
        ]
    lines += [
        "| target | role | seeds | effect [95% CI] | transfer ratio ρ [95% set] | verdict | "
        "reasons |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in targets:
        lines.append(
            f"| {text(row.target)} | {text(row.role or '—')} | {_seeds(row, design)} | "
            f"{_f(row.delta, True)} {_interval(row.ci95_low, row.ci95_high)} | "
            f"{_rho(row)} | **{text(row.verdict or '—')}** | {text('; '.join(row.reasons))} |"
        )
    return lines


def _winner_section(data: ReportData) -> list[str]:
    """The method confirmed on fresh seeds; before confirmation, the leaderboard's leader."""
    lines = ["", "## Winner", ""]
    row = data.winner
    if row is None:
        return lines + ["No method has been scored yet."]
    confirmed = data.winner_confirmed
    status = "confirmed on fresh seeds" if confirmed else "leading so far, not yet confirmed"
    lines += [
        f"**{text(describe_recorded(row.method_json))}**: family {code(row.family)}, hash "
        f"{code(row.method_hash)} ({status}); dev PGR {_f(row.mean_dev_pgr)} ± "
        f"{_f(row.se_dev_pgr)} (SE) over {row.n_seeds} search seeds, first proposed in round "
        f"{row.first_round + 1} by {_agents(row.proposed_by)}.",
        "",
        *fence(json.dumps(json.loads(row.method_json), indent=2, sort_keys=True), "json"),
    ]
    return lines


def leaderboard_rows(data: ReportData, limit: int) -> list[dict[str, str | int]]:
    """The leaderboard's top as rows a person reads: numbers rounded, the method described (last,
    as the widest column, so a narrow table artifact cuts off only its end).

    Both the report's table and the UI's table artifact show these; cells are markdown-escaped
    because the UI renders table cells as markdown too.
    """
    return [
        {
            "rank": row.rank,
            "dev PGR ± SE": f"{_f(row.mean_dev_pgr)} ± {_f(row.se_dev_pgr)}",
            "seeds": f"{row.n_seeds}"
            + ("" if row.min_seeds_met else " (too few)")
            + (" (beats ground truth: leak suspected, not eligible)" if row.leak_suspected else ""),
            "proposed by": _agents(row.proposed_by),
            "family": text(row.family),
            "method": text(describe_recorded(row.method_json)),
        }
        for row in data.leaderboard[:limit]
    ]


def _leaderboard_section(data: ReportData) -> list[str]:
    lines = ["", f"## Leaderboard (top {LEADERBOARD_ROWS}, dev split, pipeline's own trials)", ""]
    if not data.leaderboard:
        return lines + ["Empty: no method has been scored yet."]
    return lines + _table(leaderboard_rows(data, LEADERBOARD_ROWS))


def _diversity_section(data: ReportData) -> list[str]:
    """Idea collapse: agents that all end on one method family explore less than they could."""
    lines = ["", "## Idea diversity", ""]
    if not data.diversity:
        return lines + ["No scoring calls yet."]
    first = data.diversity[0]
    shared, total = first.agents_sharing_top_family, first.agents_in_study
    collapse = total > 1 and shared == total
    lines.append(
        f"{first.families_in_study} method families tried in the study; {shared} of {total} "
        f"agents' best method is in the most common family {code(first.study_top_family)}"
        + (" (**idea collapse**: every agent converged on one family)." if collapse else ".")
    )
    lines += [
        "",
        "| agent | direction | scoring calls | families tried | best dev PGR | best family |",
        "|---|---|---|---|---|---|",
    ]
    for row in data.diversity:
        lines.append(
            f"| {row.agent_id} | {text(row.direction or '—')} | {row.scoring_calls} | "
            f"{row.families_tried}: {text(row.families)} | {_f(row.best_dev_pgr)} | "
            f"{text(row.top_family)} |"
        )
    return lines


def _hacking_section(study: StudyRow) -> list[str]:
    lines = ["", "## Reward-hacking checks", ""]
    hacking = study.hacking
    if hacking is None:
        return lines + ["Not run yet: the checks need the fresh-seed confirmation."]
    flags, reasons = hacking.flags, hacking.reasons
    if not flags:
        return lines + ["No flag raised (dev vs fresh test, one-class predictions, plausibility)."]
    pairs = zip(flags, reasons, strict=False)
    lines += [f"- **{text(flag)}**: {text(reason)}" for flag, reason in pairs]
    lines += [f"- **{text(flag)}**" for flag in flags[len(reasons) :]]
    return lines
