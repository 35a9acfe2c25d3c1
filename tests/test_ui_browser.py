"""What engineers see in the Prefect UI, in a real browser: headless Chromium (Debian's package)
driven by Playwright against the server, work pool, deployments and worker of `make deploy`.

The UI at the server's root is Prefect's default one (the V2 UI since Prefect 3.8, under `/v2/`);
the test follows its links as a person would: Deployments → nightly-quick → Run → Custom run, then
the run's Artifacts tab → the report → this run's version of it.
"""

import re
import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

try:
    from playwright.sync_api import Locator, Page, expect, sync_playwright
except ImportError:
    pytest.skip("Playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
        allow_module_level=True,
    )

import test_deployments  # noqa: E402
from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.settings import PREFECT_API_URL  # noqa: E402

from labgap.store.connection import Store  # noqa: E402

pytestmark = pytest.mark.slow

deployed = test_deployments.deployed
"""`make deploy` on a free loopback port with its own PREFECT_HOME, then `make stop`."""

DEPLOYMENT = "replication-study/nightly-quick"
SIZES = ("n_agents", "rounds", "proposals_per_round", "quick_seeds", "confirmation_seeds")
RUN_TIMEOUT_S = 420
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def field(page: Page, label: str) -> Locator:
    """One form field's block (its label, description, type tabs and input), by exact label.

    Each field of Prefect's schema form is a `div.group` whose header holds its label; nested
    fields sit in a fieldset, so the child combinator keeps to the field's own label.
    """
    exact = page.locator("label").filter(has_text=re.compile(rf"^{re.escape(label)}$"))
    return page.locator("div.group").filter(has=page.locator(":scope > div").filter(has=exact))


def open_custom_run_form(page: Page, ui_root: str) -> str:
    """From the UI's root to the nightly-quick deployment's Custom-run form; returns the UI's
    base URL (the root redirects a browser without a saved preference to the default UI)."""
    page.goto(ui_root)
    page.wait_for_url(re.compile(r"/dashboard"))
    ui_base = page.url.split("/dashboard")[0]
    page.get_by_role("link", name="Deployments", exact=True).click()
    page.get_by_role("link", name="nightly-quick", exact=True).click()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]+/run"))
    return ui_base


def check_size_field(page: Page, title: str, minimum: int, maximum: int) -> None:
    """The label shows the range, the field starts empty (None), and its number input, once the
    user picks `int`, is empty and bounded by the schema's range."""
    block = field(page, f"{title} (Optional)")
    expect(block).to_have_count(1)
    expect(block).to_contain_text("empty: from the profile")
    expect(block.get_by_role("tab", name="None", exact=True)).to_have_attribute(
        "aria-selected", "true"
    )
    expect(block.get_by_text('Property is type "None"')).to_be_visible()
    expect(block.locator("input")).to_have_count(0)
    block.get_by_role("tab", name="int", exact=True).click()
    number = block.locator("input[type=number]")
    expect(number).to_have_value("")
    expect(number).to_have_attribute("min", str(minimum))
    expect(number).to_have_attribute("max", str(maximum))
    block.get_by_role("tab", name="None", exact=True).click()
    expect(block.get_by_text('Property is type "None"')).to_be_visible()


def task_file(block: Locator, path: str) -> None:
    """Give a task field (or a list item of one) a task file: its `task file` tab, then the path."""
    block.get_by_role("tab", name="task file (.yaml/.json)", exact=True).click()
    block.locator("textarea, input").fill(path)


def schema_default(deployment) -> dict:
    """The config the form starts from under the deployment's own parameters."""
    return deployment.parameter_openapi_schema["properties"]["config"]["default"]


def wait_for_flow_run(client, run_name: str, deployment_id, log: Path):
    """The run the form created (found by its name), polled until it ends."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    flow_run = None
    while time.monotonic() < deadline:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        )
        flow_run = runs[0] if runs else None
        if flow_run is not None and flow_run.state and flow_run.state.type.value in TERMINAL:
            return flow_run
        time.sleep(2)
    tail = log.read_text()[-3000:] if log.exists() else "(no worker log)"
    pytest.fail(f"flow run {run_name!r} not finished in {RUN_TIMEOUT_S} s: {flow_run}\n{tail}")


def remove_report_files(deployment, db: Path) -> None:
    """The worker wrote the study's report files under the deployment's data dir: remove them
    (the artifacts are in the server's database)."""
    with Store(db) as store:
        study_id = store.query("SELECT study_id FROM studies").item()
    data_dir = Path(deployment.job_variables["env"]["LABGAP_DATA_DIR"])
    shutil.rmtree(data_dir / "reports" / study_id, ignore_errors=True)


def test_custom_run_form_to_report_artifact(deployed, tiny_study_tasks, tmp_path):
    ui_root = PREFECT_API_URL.value().removesuffix("/api")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    schema = deployment.parameter_openapi_schema["definitions"]["StudyConfig"]["properties"]
    paths = []
    for task in tiny_study_tasks:
        paths.append(str(tmp_path / f"{task.name}.json"))
        Path(paths[-1]).write_text(task.model_dump_json(indent=2))
    files = {"lab_task": paths[0], "heldout_tasks": [paths[1]], "production_targets": [paths[2]]}
    db = tmp_path / "ui.duckdb"
    form = {**schema_default(deployment), **deployment.parameters["config"]}
    expected = {"config": {**form, **files}, "db_path": str(db)}
    started = time.monotonic()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)

            # 1. The Custom-run form: every size field empty, its range shown.
            ui_base = open_custom_run_form(page, ui_root)
            for size in SIZES:
                limits = schema[size]["anyOf"][0]
                check_size_field(page, schema[size]["title"], limits["minimum"], limits["maximum"])
            page.screenshot(path=tmp_path / "custom-run-form.png", full_page=True)

            # 2. A quick run from the form, kept small and offline: the tiny tasks as task files,
            # a temporary database; everything else as the form has it (sizes: the profile's).
            run_name = page.get_by_label("Run Name").input_value()
            task_file(field(page, "Lab Task (Optional)"), files["lab_task"])
            for name, label in [
                ("heldout_tasks", "Heldout Tasks (Optional)"),
                ("production_targets", "Production Targets (Optional)"),
            ]:
                tasks = field(page, label)
                tasks.get_by_role("tab", name="list", exact=True).click()
                tasks.get_by_role("button", name="Add item").click()
                task_file(tasks, files[name][0])
            db_path = field(page, "db_path (Optional)")
            db_path.get_by_role("tab", name="str", exact=True).click()
            db_path.locator("textarea, input").fill(str(db))
            page.screenshot(path=tmp_path / "custom-run-form-filled.png", full_page=True)
            page.get_by_role("button", name="Submit", exact=True).click()
            submitted = time.monotonic()

            # 3. The run finishes; its report artifact shows every figure.
            with get_client(sync_client=True) as client:
                flow_run = wait_for_flow_run(
                    client, run_name, deployment.id, deployed / "worker.log"
                )
                log = (deployed / "worker.log").read_text()
                assert flow_run.state.is_completed(), f"{flow_run.state}\n{log[-3000:]}"
                sent = flow_run.parameters
                keys = set(sent["config"]) | set(expected["config"])
                assert sent["db_path"] == expected["db_path"]
                assert {key: sent["config"].get(key) for key in keys} == {
                    key: expected["config"].get(key) for key in keys
                }
                artifacts = client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])
                    )
                )
            finished = time.monotonic()
            remove_report_files(deployment, db)
            report = next(a for a in artifacts if a.key and a.key.startswith("report-"))
            figures_in_markdown = len(re.findall(r"!\[[^\]]*\]\(", report.data))

            page.goto(f"{ui_base}/deployments/deployment/{deployment.id}?tab=Runs")
            page.get_by_role("link", name=run_name, exact=True).click()
            page.get_by_role("tab", name="Artifacts", exact=True).click()
            page.get_by_role("link", name=report.key).click()
            page.get_by_role("link", name=str(report.id)[:8], exact=True).click()
            page.wait_for_url(re.compile(rf"/artifacts/artifact/{report.id}"))
            rendered = page.locator(".prose").filter(has=page.get_by_role("heading", level=1))
            expect(rendered).to_be_visible()
            images = rendered.locator("img")
            expect(images).to_have_count(figures_in_markdown)
            page.wait_for_function(
                "root => [...root.querySelectorAll('img')].every(image => image.complete)",
                arg=rendered.element_handle(),
            )
            page.screenshot(path=tmp_path / "report-artifact.png", full_page=True)
            loaded = images.evaluate_all(
                "images => images.map(image => [image.alt, image.naturalWidth])"
            )
        finally:
            browser.close()

    print(
        f"\nform {submitted - started:.0f} s, run {finished - submitted:.0f} s, "
        f"artifact {time.monotonic() - finished:.0f} s; screenshots in {tmp_path}"
    )
    assert figures_in_markdown > 0, "the report artifact embeds no figure"
    assert all(width > 0 for _, width in loaded), f"images not loaded (alt, width): {loaded}"
