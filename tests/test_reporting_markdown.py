"""The markdown report and `write_report`, rendered from `load_report_data` on small studies."""

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from studies import Studies, assert_png

from labgap.methods.kinds import describe_recorded
from labgap.reporting import markup
from labgap.reporting.data import load_report_data
from labgap.reporting.markdown import FIGURES, leaderboard_rows, render_markdown, write_report
from labgap.stats.sequential import Schedule
from labgap.store.connection import Store


@pytest.fixture(scope="module")
def studies(report_studies) -> Studies:
    return report_studies


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LABGAP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def section(text: str, heading: str) -> list[str]:
    """The lines of one markdown section, up to the next heading of the same level."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), None)
    return lines[start + 1 : end]


def test_report_of_a_finished_study(studies, data_dir):
    with Store(studies.db) as store:
        files = write_report(load_report_data(store, studies.second))
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
    top = section(text, "## Headline verdicts")
    assert text.index("## Headline verdicts") < text.index("## Lab effect")
    assert "- **generalisation (held-out tasks): failed_to_replicate** (tiny-multiclass)" in top
    assert "- **production transfer (production targets): replicated** (tiny-noisy)" in top
    for question in ("generalisation", "production"):
        headline = gaps.filter(pl.col("target") == question).row(0, named=True)
        assert headline["kind"] == "headline"
        assert headline["verdict"] == study[f"{question}_verdict"][0]
        assert all(f"  - {reason}" in top for reason in json.loads(headline["reasons"]))
    assert (
        f"Both questions together: {study['overall_verdict'][0]} (replicated only if both are; "
        "it answers neither question alone)." in top
    )
    assert "**Overall" not in text and "overall verdict" not in text.lower()
    config = json.loads(study["config_json"][0])
    looks = Schedule(
        start=config["confirmation_seeds"], batch=config["seeds_per_look"], cap=config["max_seeds"]
    ).sizes
    assert f"in looks of {', '.join(str(n) for n in looks)} seeds" in text
    assert "95% intervals are repeated confidence intervals over the planned looks" in text
    lab = gaps.filter(pl.col("kind") == "lab").row(0, named=True)
    assert f"**{lab['delta']:+.3f}**" in text
    assert f"[{lab['ci95_low']:+.3f}, {lab['ci95_high']:+.3f}]" in text
    assert f"| {lab['naive_estimate']:+.3f} |" in text and "upward-biased" in text
    assert f"| {lab['n']} (look {lab['look']}, {lab['stop_reason']}) |" in text
    for row in gaps.filter(pl.col("kind") == "target").iter_rows(named=True):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| {row['target']} |"))
        assert f"**{row['verdict']}**" in line
        assert f"| {row['n']} (look {row['look']}, {row['stop_reason']}) |" in line
        assert f"{row['delta']:+.3f} [{row['ci95_low']:+.3f}, {row['ci95_high']:+.3f}]" in line
        assert f"{row['rho']:.3f}" in line and f"({row['rho_ci_kind']} Fieller set)" in line
        assert json.loads(row["reasons"])[0] in line
    assert f"`{winner}` (confirmed on fresh seeds)" in text and "```json" in text
    board = section(text, "## Leaderboard")
    assert len([ln for ln in board if ln.startswith("| ")]) == 1 + 10
    assert "| rank | dev PGR ± SE | seeds | proposed by | family | method |" in board
    assert "| 1 | " in board[board.index("|---|---|---|---|---|---|") + 1]
    rows = [ln for ln in board if re.match(r"\| \d+ \|", ln)]
    assert all(re.match(r"\| \d+ \| \d\.\d{3} ± \d\.\d{3} \| \d+ \| agents? \d", ln) for ln in rows)
    assert "## Reward-hacking checks" in text and "## Idea diversity" in text
    total = trials["wall_seconds"].sum()
    assert f"{trials.height} experiments (trials rows" in text and f"{total:.1f} s" in text
    assert "No LLM calls recorded for this study (embedded agents)." in text
    for name in ("research_progress.png", "forest_plot.png", "gap_trend.png"):
        assert f"]({name})" in text
    assert files.html.parent == files.folder and "<table>" in files.html.read_text()


def test_figures_take_the_sources_they_are_given(studies):
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
    sources = {name: f"data:image/png;base64,{name}" for name in FIGURES}
    text = render_markdown(data, sources)
    for name, (_, caption) in FIGURES.items():
        assert f"![{caption}](data:image/png;base64,{name})" in text
    assert ".png)" not in text


def test_leaderboard_rows_are_rounded_and_described(studies):
    with Store(studies.db) as store:
        data = load_report_data(store, studies.second)
    rows = leaderboard_rows(data, 3)
    assert [row["rank"] for row in rows] == [1, 2, 3]
    for row, ranked in zip(rows, data.leaderboard, strict=False):
        assert row["dev PGR ± SE"] == f"{ranked.mean_dev_pgr:.3f} ± {ranked.se_dev_pgr:.3f}"
        method = describe_recorded(ranked.method_json)
        assert row["family"] == ranked.family and row["method"] == method
        agents = ranked.proposed_by.split(",")
        assert row["proposed by"] == f"agent{'s' if len(agents) > 1 else ''} {', '.join(agents)}"
        assert ranked.method_hash not in json.dumps(row)


def test_markdown_escapes_what_could_break_a_table_or_inject_html():
    evil = "<img src=x onerror=alert(1)> a | b [l](http://e) ![i](http://e/i.png) &lt;\nnext"
    escaped = markup.text(evil)
    assert escaped == (
        "\\<img src=x onerror=alert(1)> a \\| b [l\\](http://e) ![i\\](http://e/i.png) \\&lt; next"
    )
    assert markup.text("Δ's upper bound 0.1 < 0, CI [0.1, 0.2] & more") == (
        "Δ's upper bound 0.1 < 0, CI [0.1, 0.2] & more"
    )
    assert markup.text("a\\|b `c`") == "a\\\\\\|b \\`c\\`"
    assert markup.code("x`y") == "``x`y``" and markup.code("`x") == "`` `x ``"
    assert markup.code("a\nb") == "`a b`"
    assert markup.fence("```\n<b>", "json") == ["````json", "```\n<b>", "````"]


def test_database_text_cannot_break_the_report(studies, tmp_path):
    """Hostile reasons, directions, flags and errors stay text in the markdown and the HTML."""
    db = tmp_path / "hostile.duckdb"
    shutil.copy(studies.db, db)
    evil = "<script>alert(1)</script> | ![x](http://evil/x.png) `tick` [l](http://evil)"
    with Store(db) as store, store.transaction() as cursor:
        cursor.execute(
            "UPDATE gap_results SET reasons = ? WHERE study_id = ?",
            [json.dumps([evil]), studies.second],
        )
        cursor.execute(
            "UPDATE studies SET error = ?, hacking_flags = ? WHERE study_id = ?",
            [
                "```\n<img src=http://evil/e.png> `x`",
                json.dumps({"flags": ["<b>f</b>"], "reasons": [evil]}),
                studies.second,
            ],
        )
        cursor.execute(
            "UPDATE agents SET direction = ? WHERE study_id = ?", ["<i>d</i>|x", studies.second]
        )
    with Store(db) as store:
        files = write_report(load_report_data(store, studies.second), folder=tmp_path / "out")
    markdown = files.markdown.read_text()
    error = "- error: ```` ``` <img src=http://evil/e.png> `x` ````"
    assert error in markdown  # a code span its backticks cannot close: shown, not rendered
    outside_code = markdown.replace(error, "")
    assert "<script" not in outside_code.replace("\\<script", "")
    assert "<img" not in outside_code.replace("\\<img", "")
    assert not re.search(r"(?<!\\)\]\(http", outside_code)
    targets = section(markdown, "## Targets")
    header = next(ln for ln in targets if ln.startswith("| target |"))
    rows = [line for line in targets[targets.index(header) + 2 :] if line.startswith("| ")]
    assert len(rows) == 2
    for line in rows:
        cells = re.split(r"(?<!\\)\|", line)
        assert len(cells) == header.count("|") + 1, line
    diversity = section(markdown, "## Idea diversity")
    assert any("| \\<i>d\\</i>\\|x |" in line for line in diversity)
    page = files.html.read_text()
    assert "<script" not in page and "<b>f</b>" not in page and "<i>d</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert all(
        link.startswith("data:image/png;base64,") for link in re.findall(r'src="([^"]*)"', page)
    )
    assert "href=" not in page
    assert page.count("<img ") == len(FIGURES)


def test_report_of_an_incomplete_study_says_so(studies, data_dir):
    with Store(studies.db) as store:
        data = load_report_data(store, studies.incomplete)
        files = write_report(data)
        assert render_markdown(data) == files.markdown.read_text()
    text = files.markdown.read_text()
    assert "> **Incomplete:** this study has no gap results yet (status `running`)" in text
    assert "- **generalisation (held-out tasks): —**" in text
    assert "- **production transfer (production targets): —**" in text
    assert "  - not decided yet (status running)" in text
    assert "Both questions together" not in text
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
        files = write_report(load_report_data(store, studies.first), folder=tmp_path / "out")
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


def test_a_report_is_rendered_from_its_data_alone(studies, tmp_path):
    """No section reads the database: the report renders after the database is gone."""
    db = tmp_path / "gone.duckdb"
    shutil.copy(studies.db, db)
    with Store(db) as store:
        data = load_report_data(store, studies.first)
    db.unlink()
    files = write_report(data, folder=tmp_path / "out")
    assert files.markdown.read_text() == render_markdown(data)
    assert f"database `{db}`" in render_markdown(data)
    for png in (files.research_progress, files.forest_plot, files.gap_trend):
        assert_png(png)


def test_a_union_fieller_set_and_a_study_before_the_headline_verdicts(studies):
    """A ρ set of two pieces prints as their union; a study recorded before schema 3 shows its one
    verdict as what it was, never as either question's answer."""
    with Store(studies.db) as store:
        data = load_report_data(store, studies.first)
    union = "[0.1, 0.5] ∪ [0.9, 2.3]"
    gaps = [
        row.model_copy(update={"rho_ci_kind": "union", "rho_ci_set": union})
        if row.kind == "target"
        else row
        for row in data.gaps
    ]
    text = render_markdown(data.model_copy(update={"gaps": gaps}))
    rows = [ln for ln in section(text, "## Targets") if ln.startswith("| tiny-")]
    assert len(rows) == 2 and all(f" {union} (union Fieller set) |" in ln for ln in rows)
    legacy = data.model_copy(
        update={
            "study": data.study.model_copy(
                update={"generalisation_verdict": None, "production_verdict": None, "design": None}
            ),
            "gaps": [
                row.model_copy(update={"look": None, "stop_reason": None})
                for row in gaps
                if row.kind != "headline"
            ],
        }
    )
    top = section(render_markdown(legacy), "## Headline verdicts")
    assert "- **generalisation (held-out tasks): —**" in top
    assert "- **production transfer (production targets): —**" in top
    assert (
        "  - not recorded: the study predates the two headline verdicts; its one verdict over all "
        f"targets was {data.study.overall_verdict}"
    ) in top
    assert not any(line.startswith("Both questions") for line in top)
    rows = [ln for ln in section(render_markdown(legacy), "## Targets") if ln.startswith("| tiny-")]
    assert all(re.match(r"\| tiny-[a-z]+ \| \w+ \| 4 \| ", ln) for ln in rows)
