"""The report's three figures, drawn from `ReportData` alone (no database behind them)."""

import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from studies import Studies, assert_png

from labgap.reporting.data import ReportData, load_report_data
from labgap.reporting.figures import (
    plot_forest,
    plot_gap_trend,
    plot_research_progress,
    save_figure,
)
from labgap.store.connection import Store

PLOTS = {
    "research_progress": plot_research_progress,
    "forest_plot": plot_forest,
    "gap_trend": plot_gap_trend,
}


@pytest.fixture(scope="module")
def studies(report_studies) -> Studies:
    return report_studies


@pytest.fixture(scope="module")
def data(studies) -> dict[str, ReportData]:
    with Store(studies.db) as store:
        return {
            name: load_report_data(store, getattr(studies, name))
            for name in ("first", "second", "incomplete")
        }


def texts(figure: Figure) -> list[str]:
    """Every text drawn in the figure: titles, labels, ticks, notes and legend entries."""
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def draw_all(data: ReportData, folder) -> dict[str, list[str]]:
    """Draw and save every figure (each must be a real PNG); return each figure's texts."""
    drawn = {}
    for name, plot in PLOTS.items():
        figure = plot(data)
        save_figure(figure, folder / f"{name}.png")
        assert_png(folder / f"{name}.png")
        drawn[name] = texts(figure)
    return drawn


def test_figures_of_a_finished_study(data, tmp_path):
    second = data["second"]
    drawn = draw_all(second, tmp_path)
    progress = drawn["research_progress"]
    assert any(second.study.study_id in t for t in progress)
    assert f"vanilla baseline ({second.baseline_dev_pgr:.3f})" in progress
    assert sum(t.startswith("agent ") for t in progress) == 4
    forest = drawn["forest_plot"]
    title = next(t for t in forest if t.startswith("Lab effect and transfer"))
    assert title.endswith(
        f"{second.study.study_id}: generalisation failed to replicate · production replicated"
    )
    assert not any("overall" in t for t in forest)
    assert "reference" in forest and "no estimate" not in forest
    assert "held-out task (generalisation)" in forest and "production target (production)" in forest
    assert "95% CI (repeated over the planned looks)" in forest
    ax = plot_forest(second).axes[0]
    ticks = sorted(zip(ax.get_yticks(), ax.get_yticklabels(), strict=True), key=lambda p: -p[0])
    heldout, production = (
        next(row for row in second.gaps_of("target") if row.role == role)
        for role in ("heldout", "production")
    )
    assert [label.get_text() for _, label in ticks] == [  # top down: lab, held-out, production
        f"lab effect: {second.lab.target}\n(fresh seeds, {second.lab.n} seeds, decided)",
        f"{heldout.target}\n(held-out task, {heldout.n} seeds, {heldout.stop_reason})",
        f"{production.target}\n(production target, {production.n} seeds, decided)",
    ]
    for row in second.gaps_of("target"):
        assert row.verdict.replace("_", " ") in forest
    lab = second.lab.delta
    assert any(t.startswith("ρ_min × lab effect") and f"{lab:.3f}" in t for t in forest)
    trend = drawn["gap_trend"]
    assert any("target markers coloured by verdict" in t for t in trend)
    ticks = [t.get_text() for t in plot_gap_trend(second).axes[0].get_xticklabels()]
    ids = [data[name].study.study_id.removeprefix("tiny-report-") for name in ("first", "second")]
    assert [t.split("\n")[1] for t in ticks] == ids
    assert ticks[1].startswith("2026-05-08 03:00\n")
    assert [t.split("\n")[2] for t in ticks] == ["production replicated"] * 2
    assert "tiny-noisy (production target)" in trend and "tiny-multiclass (held-out task)" in trend
    assert "no results yet" not in trend


def test_figures_of_an_incomplete_study_say_what_is_missing(data, tmp_path):
    drawn = draw_all(data["incomplete"], tmp_path)
    assert "no gap results yet (status: running): the study is incomplete" in drawn["forest_plot"]
    trend = drawn["gap_trend"]
    assert any("only one study so far" in t for t in trend)
    assert "no results yet" in trend and "no study of this name has gap results yet" in trend
    assert not any("no scoring calls" in t for t in drawn["research_progress"])


def test_figures_draw_missing_values(data, tmp_path):
    """No search yet, no baseline, a target without CI and one without any estimate."""
    first = data["first"]
    lab, no_ci, no_estimate, *rest = first.gaps
    missing = first.model_copy(
        update={
            "progress": [],
            "baseline_dev_pgr": None,
            "gaps": [
                lab.model_copy(update={"delta": None}),
                no_ci.model_copy(update={"ci95_low": None, "ci95_high": None}),
                no_estimate.model_copy(update={"delta": None, "verdict": None}),
                *rest,
            ],
        }
    )
    drawn = draw_all(missing, tmp_path)
    progress = drawn["research_progress"]
    assert "no scoring calls recorded yet: the agents' search has not started" in progress
    assert not any(t.startswith("vanilla baseline") for t in progress)
    forest = drawn["forest_plot"]
    assert forest.count("no estimate") == 2 and "no CI" in forest and "no verdict" in forest
    assert "no lab effect estimate: the ρ_min margin cannot be drawn" in forest
    nothing = first.model_copy(update={"baseline_dev_pgr": None})
    progress = texts(plot_research_progress(nothing))
    assert "the vanilla baseline has no dev PGR in this study" in progress


def test_figures_match_the_report_files(data, tmp_path):
    """write_report saves exactly these figures: same drawing, same bytes."""
    from labgap.reporting.markdown import write_report

    files = write_report(data["second"], folder=tmp_path / "report")
    draw_all(data["second"], tmp_path)
    for name in PLOTS:
        assert (tmp_path / f"{name}.png").read_bytes() == getattr(files, name).read_bytes()
