"""report.html: one page that opens anywhere, its figures embedded as PNGs, its text escaped."""

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from studies import Studies

from labgap.reporting.data import ReportData, load_report_data
from labgap.reporting.html import render_html
from labgap.reporting.markdown import (
    FIGURES,
    ReportFiles,
    inline_figures,
    render_markdown,
    write_report,
)
from labgap.store.connection import Store

PNG = "data:image/png;base64,"


@pytest.fixture(scope="module")
def report(report_studies: Studies, tmp_path_factory) -> tuple[ReportData, ReportFiles]:
    with Store(report_studies.db) as store:
        data = load_report_data(store, report_studies.second)
    return data, write_report(data, folder=tmp_path_factory.mktemp("html"))


def sources(page: str) -> list[str]:
    return re.findall(r'\bsrc="([^"]*)"', page)


def test_the_page_references_nothing_outside_itself(report):
    data, files = report
    page = files.html.read_text()
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    assert f"<title>Study report: {data.study.study_id}</title>" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for external in ('src="http', "href=", "<link", "<script", "@import", "url("):
        assert external not in page, external
    assert len(sources(page)) == len(FIGURES)
    assert all(source.startswith(PNG) for source in sources(page)), "relative image path"


def test_embedded_figures_are_the_written_pngs(report):
    """Palette-compressed, same size, and visually the same as the files next to the page."""
    _, files = report
    page = files.html.read_text()
    for source, name in zip(sources(page), FIGURES, strict=True):
        raw = base64.b64decode(source.removeprefix(PNG), validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as embedded, Image.open(getattr(files, name)) as written:
            assert embedded.format == "PNG" and embedded.size == written.size
            difference = np.abs(
                np.asarray(embedded.convert("RGB"), dtype=int)
                - np.asarray(written.convert("RGB"), dtype=int)
            )
            assert difference.mean() < 1.0, (name, difference.mean())
        assert len(raw) < getattr(files, name).stat().st_size / 2
    assert len(page.encode()) < 200_000


def test_sections_and_tables_are_rendered(report):
    data, files = report
    page = files.html.read_text()
    markdown = render_markdown(data)
    assert page.count("<table>") == sum(line.startswith("|---") for line in markdown.splitlines())
    for heading in re.findall(r"^## (.+)$", markdown, flags=re.MULTILINE):
        assert f"<h2>{heading.replace('&', '&amp;')}</h2>" in page, heading
    for label, verdict in (
        ("generalisation (held-out tasks)", data.study.generalisation_verdict),
        ("production transfer (production targets)", data.study.production_verdict),
    ):
        assert f"<li><strong>{label}: {verdict}</strong>" in page
    assert "<strong>Overall" not in page
    assert '<code class="language-json">' in page
    title = f"Study report: {data.study.study_id}"
    assert page == render_html(render_markdown(data, inline_figures(files)), title)


def test_markup_in_the_text_is_shown_not_run():
    page = render_html(
        "# t\n\n<script>alert(1)</script>\n\n| a |\n|---|\n| <b>x</b> |\n", "<i>title</i>"
    )
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>&lt;i&gt;title&lt;/i&gt;</title>" in page
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in page
