"""The method-program sandbox, with real processes: what a program can and cannot do, and how every
way it can fail comes back as one clear error instead of an exception."""

import os
import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

import labgap
from labgap.errors import LabgapInputError
from labgap.paths import data_dir
from labgap.programs.isolation import detect_isolation
from labgap.programs.outputs import validate_probabilities
from labgap.programs.sandbox import ProgramInputs, Sandbox, SandboxLimits

SECRET = "sk-test-secret"
RECIPE = {"epochs": 3, "lr": 1e-2, "weight_decay": 0.0, "hidden": 32, "dropout": 0.0,
          "batch_size": 64, "fixed": False}  # fmt: skip

UNIFORM = """
import numpy as np
def fit_predict(data):
    return np.full((len(data.eval_features), data.n_classes), 1.0 / data.n_classes)
"""


def make_inputs(seed: int = 0) -> ProgramInputs:
    rng = np.random.default_rng(0)
    return ProgramInputs(
        train_features=rng.normal(size=(200, 16)).astype(np.float32),
        teacher_probs=rng.dirichlet([1.0, 1.0], size=200).astype(np.float32),
        eval_features=rng.normal(size=(60, 16)).astype(np.float32),
        n_classes=2,
        seed=seed,
        recipe=RECIPE,
        params={"k": 5, "mode": "soft"},
    )


def require_full() -> None:
    isolation = detect_isolation()
    if isolation.level != "full":
        pytest.skip(f"this OS cannot provide the full sandbox: {isolation.detail}")


@pytest.fixture(scope="module")
def inputs() -> ProgramInputs:
    return make_inputs()


@pytest.fixture(scope="module")
def sandbox():
    """Default limits; started while the host has a secret in its environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANTHROPIC_API_KEY", SECRET)
        patch.delenv("LABGAP_SANDBOX", raising=False)
        with Sandbox() as box:
            box.warm()
            yield box


def fails(run, *phrases: str) -> str:
    assert run.probs is None and run.error, run
    for phrase in phrases:
        assert phrase in run.error, run.error
    return run.error


def test_detect_isolation_reports_full_here(monkeypatch):
    monkeypatch.delenv("LABGAP_SANDBOX", raising=False)
    require_full()
    isolation = detect_isolation()
    assert "bubblewrap" in isolation.detail and "NOT" not in isolation.detail
    monkeypatch.setenv("LABGAP_SANDBOX", "network-only")
    assert detect_isolation().level == "network-only"
    assert "NOT hidden" in detect_isolation().detail
    monkeypatch.setenv("LABGAP_SANDBOX", "strongest")
    with pytest.raises(LabgapInputError, match="LABGAP_SANDBOX"):
        detect_isolation()


def test_a_correct_program_returns_validated_probabilities(sandbox, inputs):
    source = """
import numpy as np, torch
def fit_predict(data):
    assert sorted(vars(data)) == ["eval_features", "n_classes", "params", "recipe", "seed",
                                  "teacher_probs", "train_features"]
    assert data.train_features.dtype == data.eval_features.dtype == np.float32
    assert (data.recipe.hidden, data.recipe.batch_size, data.params["k"]) == (32, 64, 5)
    assert not hasattr(data.recipe, "fixed")
    print("training on", data.train_features.shape)
    w = torch.zeros(data.train_features.shape[1], data.n_classes, requires_grad=True)
    return torch.softmax(torch.from_numpy(data.eval_features) @ w, dim=1)  # a tensor, with grad
"""
    run = sandbox.run(source, inputs)
    assert run.error is None, run.error
    assert run.status == "ok" and run.probs.dtype == np.float32 and run.probs.shape == (60, 2)
    np.testing.assert_allclose(run.probs, 0.5)
    assert "training on (200, 16)" in run.log
    assert run.wall_seconds > 0 and run.cpu_seconds >= 0


def test_no_network_not_even_to_the_host(sandbox, inputs):
    require_full()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        source = f"""
import socket
def fit_predict(data):
    outcomes = []
    for address in [("1.1.1.1", 53), ("127.0.0.1", {port})]:
        try:
            socket.create_connection(address, timeout=2).close()
            outcomes.append(f"CONNECTED to {{address}}")
        except OSError as error:
            outcomes.append(f"connection to {{address}} failed: {{error!r}}")
    raise RuntimeError("; ".join(outcomes))
"""
        error = fails(sandbox.run(source, inputs), "fit_predict raised RuntimeError")
        server.settimeout(0.1)
        with pytest.raises(TimeoutError):
            server.accept()
    assert error.count("failed") == 2 and "CONNECTED" not in error


def test_the_environment_is_empty(sandbox, inputs, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)  # the fixture's zygote started with it too
    source = "import os\ndef fit_predict(data):\n    raise RuntimeError(repr(dict(os.environ)))\n"
    error = fails(sandbox.run(source, inputs), "RuntimeError", "PATH")
    assert SECRET not in error and "ANTHROPIC" not in error


def test_project_data_and_database_files_are_invisible(sandbox, inputs, tmp_path):
    require_full()
    import duckdb

    marker = f"sandbox-test-{uuid.uuid4().hex}"
    in_data_dir = data_dir() / f"{marker}.txt"
    in_data_dir.write_text("a label the program must not see")
    databases = [tmp_path / "x.duckdb", data_dir() / f"{marker}.duckdb"]
    for path in databases:
        duckdb.connect(str(path)).close()
    secrets = [Path(labgap.__file__).parents[1] / "pyproject.toml", in_data_dir, *databases]
    source = f"""
def fit_predict(data):
    outcomes = []
    for path in {[str(p) for p in secrets]!r}:
        try:
            with open(path, "rb") as file:
                outcomes.append(f"READ {{path}}: {{file.read(20)!r}}")
        except OSError as error:
            outcomes.append(f"no access to {{path}}: {{type(error).__name__}}")
    raise RuntimeError("\\n".join(outcomes))
"""
    try:
        error = fails(sandbox.run(source, inputs))
    finally:
        for path in [in_data_dir, databases[1]]:
            path.unlink(missing_ok=True)
    assert error.count("no access") == len(secrets) and "READ" not in error, error


def test_sklearn_bundled_datasets_are_hidden_even_after_unmount_attempts(sandbox, inputs):
    require_full()
    source = """
import os, subprocess, sklearn
def fit_predict(data):
    folder = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data")
    shell = f"umount {folder}; unshare -rm sh -c 'umount {folder}; cat {folder}/breast_cancer.csv'"
    escaped = subprocess.run(["sh", "-c", shell], capture_output=True, text=True).stdout
    from sklearn.datasets import load_breast_cancer
    try:
        load_breast_cancer()
        loaded = "LOADED"
    except OSError as error:
        loaded = type(error).__name__
    raise RuntimeError(f"listing={os.listdir(folder)} loaded={loaded} escaped={escaped!r}")
"""
    error = fails(sandbox.run(source, inputs), "listing=[]", "loaded=FileNotFoundError")
    assert "escaped=''" in error and "569,30" not in error


def test_memory_limit(sandbox, inputs):
    source = "import numpy as np\ndef fit_predict(data):\n    return np.ones(int(20e9) // 8)\n"
    fails(sandbox.run(source, inputs), "fit_predict raised MemoryError", "memory limit")


def test_cpu_and_process_limits(inputs):
    fork_until_refused = """
import os, signal
def fit_predict(data):
    children = []
    try:
        while len(children) < 1000:
            pid = os.fork()
            if pid == 0:
                signal.pause()
            children.append(pid)
    except OSError as error:
        raise RuntimeError(f"forked {len(children)} then {error}")
"""
    with Sandbox(SandboxLimits(cpu_seconds=2, wall_seconds=60, processes=32)) as box:
        run = box.run("def fit_predict(data):\n    while True:\n        pass\n", inputs)
        forks = box.run(fork_until_refused, inputs)
    fails(run, "exceeded the CPU limit of 2 s")
    assert run.status == "cpu_limit" and run.cpu_seconds >= 1.5
    require_full()
    fails(forks, "Resource temporarily unavailable")
    assert int(forks.error.split("forked ")[1].split()[0]) < 32


def test_wall_clock_limit(inputs):
    with Sandbox(SandboxLimits(wall_seconds=2)) as box:
        run = box.run("import time\ndef fit_predict(data):\n    time.sleep(60)\n", inputs)
    fails(run, "timed out after 2 s")
    assert run.status == "timeout" and run.wall_seconds < 10


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("np.full((10, 3), 1 / 3)", "returned shape (10, 3), expected (60, 2)"),
        ("np.where(np.arange(120).reshape(60, 2) < 6, np.nan, 0.5)", "non-finite values (NaN/inf) in 3 rows"),
        ("np.tile([1.5, -0.5], (60, 1))", "returned negative probabilities"),
        ("np.tile([0.9, 0.47], (60, 1))", "rows do not sum to 1 (worst row sums to 1.37)"),
        ("'all positive'", "did not return an array of numbers (got str)"),
        ("None", "did not return an array"),
    ],
)  # fmt: skip
def test_bad_outputs_get_a_clear_message(sandbox, inputs, result, message):
    source = f"import numpy as np\ndef fit_predict(data):\n    return {result}\n"
    run = sandbox.run(source, inputs)
    fails(run, message)
    assert run.status == "invalid_output"


def test_validation_tolerates_float_rounding():
    probs, error = validate_probabilities(np.array([[1.0 + 4e-4, -5e-7], [0.25, 0.75]]))
    assert error is None and probs.dtype == np.float32 and probs.min() >= 0


def test_an_exception_names_its_type_and_the_program_line(sandbox, inputs):
    source = "def helper():\n    return 1 / 0\n\ndef fit_predict(data):\n    return helper()\n"
    error = fails(sandbox.run(source, inputs), "fit_predict raised ZeroDivisionError")
    assert 'File "program.py", line 2, in helper' in error and "zygote" not in error


def test_programs_without_fit_predict_or_crashing_on_import(sandbox, inputs):
    fails(sandbox.run("x = 1\n", inputs), "does not define fit_predict")
    fails(sandbox.run("def fit_predict(data)\n", inputs), "raised SyntaxError", "line 1")
    fails(
        sandbox.run("import nonexistent_module\n", inputs), "program.py raised ModuleNotFoundError"
    )


def test_stray_processes_do_not_outlive_the_run(sandbox, inputs):
    source = """
import ctypes, os, time
import numpy as np
def fit_predict(data):
    if os.fork() == 0:  # leaves the process group and double-forks: setsid escapes killpg
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "3607"])
        os._exit(0)
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "3608"])
    if os.fork() == 0:
        ctypes.CDLL(None).prctl(15, b"stray-python", 0, 0, 0)
        time.sleep(3600)
    time.sleep(0.5)
    return np.full((len(data.eval_features), 2), 0.5)
"""
    run = sandbox.run(source, inputs)
    assert run.error is None, run.error
    survivors = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            name = (entry / "comm").read_bytes()
        except OSError:
            continue
        if command.startswith((b"sleep 3607", b"sleep 3608")) or name.startswith(b"stray-python"):
            survivors.append((entry.name, command, name))
    assert not survivors


def test_two_concurrent_runs_both_succeed(sandbox, inputs):
    source = "import time\n" + UNIFORM.replace("    return", "    time.sleep(1)\n    return")
    runs = []
    threads = [threading.Thread(target=lambda: runs.append(sandbox.run(source, inputs)))]
    threads.append(threading.Thread(target=lambda: runs.append(sandbox.run(source, inputs))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 2 and all(run.error is None for run in runs), runs


def test_same_source_inputs_and_seed_give_identical_bytes(sandbox):
    source = """
import random
import numpy as np, torch
def fit_predict(data):
    x, y = torch.from_numpy(data.train_features), torch.from_numpy(data.teacher_probs)
    model = torch.nn.Sequential(torch.nn.Linear(16, data.recipe.hidden), torch.nn.ReLU(),
                                torch.nn.Dropout(0.2), torch.nn.Linear(data.recipe.hidden, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=data.recipe.lr)
    for _ in range(data.recipe.epochs):
        for batch in torch.randperm(len(x)).split(data.recipe.batch_size):
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    model.eval()
    noise = np.random.rand() + random.random()
    probs = torch.softmax(model(torch.from_numpy(data.eval_features)) * (1 + noise), 1)
    return probs.detach().numpy()
"""
    first, second = sandbox.run(source, make_inputs(7)), sandbox.run(source, make_inputs(7))
    other = sandbox.run(source, make_inputs(8))
    assert first.error is None and other.error is None, (first.error, other.error)
    assert first.probs.tobytes() == second.probs.tobytes()
    assert first.probs.tobytes() != other.probs.tobytes()


def test_a_dead_zygote_is_replaced(sandbox, inputs):
    for zygote in list(sandbox._all):
        zygote.process.kill()
        zygote.process.wait()
    assert sandbox.run(UNIFORM, inputs).error is None


def test_no_isolation_level_still_has_an_empty_environment(inputs, monkeypatch):
    monkeypatch.setenv("LABGAP_SANDBOX", "none")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    isolation = detect_isolation()
    assert isolation.level == "none" and "no isolation" in isolation.detail
    source = "import os\ndef fit_predict(data):\n    raise RuntimeError(repr(dict(os.environ)))\n"
    with Sandbox(isolation=isolation) as box:
        assert box.run(UNIFORM, inputs).error is None
        error = fails(box.run(source, inputs), "RuntimeError", "PATH")
    assert SECRET not in error and "ANTHROPIC" not in error
    assert os.environ["ANTHROPIC_API_KEY"] == SECRET
