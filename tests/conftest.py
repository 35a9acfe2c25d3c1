"""Shared fixtures. Downloads and embeddings are cached in the project's data/ folder (as `make`
sets LABGAP_DATA_DIR); each test writes its database to its own temporary folder."""

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("LABGAP_DATA_DIR", str(Path(__file__).resolve().parent.parent / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from labgap.data.datasets import BuiltinDataset  # noqa: E402
from labgap.data.features import NumericView, PixelSummaryView  # noqa: E402
from labgap.data.tasks import SplitSizes, TaskSpec, TrainingRecipe  # noqa: E402


@pytest.fixture(scope="session")
def tiny_binary_task() -> TaskSpec:
    """Breast cancer: LR on two columns -> small MLP on all 30. Trains in well under a second."""
    return TaskSpec(
        name="tiny-binary",
        dataset=BuiltinDataset(name="breast-cancer"),
        weak_view=NumericView(columns=[0, 1]),
        strong_view=NumericView(),
        recipe=TrainingRecipe(hidden=64, epochs=10, batch_size=32),
        splits=SplitSizes(weak_train=150, w2s_train=250),
    )


@pytest.fixture(scope="session")
def tiny_multiclass_task() -> TaskSpec:
    """Digits: LR on 4x4-block pixel means -> MLP on all pixels, on a 600-row subset."""
    return TaskSpec(
        name="tiny-multiclass",
        dataset=BuiltinDataset(name="digits"),
        subset=600,
        weak_view=PixelSummaryView(block=4),
        strong_view=NumericView(),
        recipe=TrainingRecipe(hidden=64, epochs=10),
        splits=SplitSizes(weak_train=150, w2s_train=250),
    )


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (entering it costs ~10 s)."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def tiny_study_tasks(tiny_binary_task, tiny_multiclass_task):
    """A lab task, a held-out task and a production variant, all small enough to train in ms."""
    from labgap.data.tasks import WeakModel

    noisy = tiny_binary_task.model_copy(
        update={"name": "tiny-noisy", "weak_model": WeakModel(label_noise=0.2)}
    )
    return tiny_binary_task, tiny_multiclass_task, noisy


@pytest.fixture(scope="session")
def report_studies(tiny_study_tasks, tmp_path_factory, prefect_harness):
    """Three small studies in one database, built once per run: two finished by the real flow a
    week apart, one interrupted after its search (see tests/studies.py). Under pytest-xdist the
    first worker to ask builds them and every worker reads its own copy."""
    from studies import Studies, make_studies

    def build(folder: Path) -> Studies:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LABGAP_DATA_DIR", str(folder / "data"))
            return make_studies(tiny_study_tasks, folder)

    folder = tmp_path_factory.mktemp("report")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return build(folder)
    shared = tmp_path_factory.getbasetemp().parent / "report-studies"  # this run's workers'
    shared.mkdir(exist_ok=True)
    ids = shared / "study-ids.json"
    with open(shared / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ids.exists():
            built = build(shared / "built")
            ids.write_text(json.dumps([built.first, built.second, built.incomplete]))
    shutil.copytree(shared / "built", folder, dirs_exist_ok=True)
    return Studies(folder / "studies.duckdb", *json.loads(ids.read_text()))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Hand out the longest modules first: `make test` runs the suite on pytest-xdist workers a
    module at a time (`--dist loadscope`, collection order kept), and a long end-to-end study
    started last would leave one worker running alone while the other has finished."""

    def weight(item) -> int:
        if item.get_closest_marker("slow"):
            return 0
        return 1 if {"prefect_harness", "report_studies"} & set(item.fixturenames) else 2

    weights: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        weights[module] = min(weights.get(module, 2), weight(item))
    items.sort(key=lambda item: weights[item.nodeid.split("::")[0]])


_exit_status = {"code": 0}
_calibration_figures: list[str] = []


def pytest_runtest_logreport(report):
    if report.when == "call" and "calibration" in report.nodeid:
        _calibration_figures.extend(str(value) for _, value in report.user_properties)


def pytest_terminal_summary(terminalreporter):
    """Print the statistics calibration figures (rates, coverage, power) in every run."""
    if _calibration_figures:
        terminalreporter.section("calibration figures")
        for line in _calibration_figures:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


def pytest_unconfigure(config):
    """End the process as soon as pytest is done, keeping its exit status.

    After a session that ran Prefect flows, duckdb 2.0's nanobind bindings print pages of
    "leaked instances" warnings during interpreter teardown (harmless: every connection was
    closed), which would bury pytest's summary line. Skipping the teardown keeps the summary last.
    A pytest-xdist worker ends normally: its controller prints the summary.
    """
    import sys

    if hasattr(config, "workerinput"):
        return

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status["code"])
