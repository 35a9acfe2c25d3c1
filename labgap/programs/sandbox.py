"""Run untrusted method programs in a sandbox: no network, an empty environment, hard limits.

A program is Python source defining `fit_predict(data) -> probabilities`. It runs in a forked child
of a long-lived sandboxed server (the zygote, `zygote.py`), which pays the 2-4 s numpy/torch/sklearn
import once. With bubblewrap ("full") the sandbox sees only the Python installation, read-only, with
the labelled data that libraries ship (sklearn's datasets) hidden; the project tree, the data
directory and $HOME are not there. Ground-truth labels never enter: the host writes only features,
teacher probabilities and settings. Whatever a program does comes back as a `ProgramRun`, whose
output is validated on the host (outputs.py), never trusted from inside. How strongly this machine
isolates programs, and the bubblewrap command, are isolation.py's.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from labgap.programs.isolation import (
    TEMP_PREFIX,
    Isolation,
    Level,
    bwrap_binary,
    bwrap_command,
    detect_isolation,
    runs_as_own_uid,
)
from labgap.programs.outputs import MESSAGE_CHARS, clip_message, read_output, read_text

INPUT_ARRAYS = ("train_features", "teacher_probs", "eval_features")
RECIPE_FIELDS = ("epochs", "lr", "weight_decay", "hidden", "dropout", "batch_size")
ZYGOTE_SCRIPT = Path(__file__).with_name("zygote.py")
KIT_MODULE = Path(__file__).parents[1] / "engine" / "mlp.py"
"""Offered to programs as `import w2s_kit`: the seeded MLP and its training loop (standalone)."""
START_TIMEOUT_SECONDS = 180
REPLY_GRACE_SECONDS = 30
EXIT_BAD_RETURN = 2  # zygote.py: the program returned something that is not valid output
# As root, each zygote's children switch to a uid of their own (UID_BASE + pid * 64 + slot): uid 0
# ignores RLIMIT_NPROC, and a root child could unmount what hides library data (see zygote.py).
UID_BASE = 0x40000000
ZYGOTE_ENV = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
    # One BLAS/OpenMP thread while importing keeps fork safe; each run then sets its own count.
    **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "1"),
    "OMP_WAIT_POLICY": "PASSIVE",  # spinning OpenMP threads run 10-20x slower on a busy machine
    "JE_ARROW_MALLOC_CONF": "background_thread:false",  # pyarrow (via sklearn) would start one
}


class SandboxUnavailable(RuntimeError):
    """The sandbox itself failed (not the program): the zygote did not start or answer."""


class SandboxLimits(BaseModel):
    """Per-run limits, enforced inside the sandbox with setrlimit and a wall-clock watchdog."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    cpu_seconds: int = Field(300, ge=1, le=86_400, description="CPU time of the program's process")
    memory_mb: int = Field(
        6144,
        ge=2048,
        le=2**20,
        description="address space, incl. ~1.2 GB of pre-imported libraries",
    )
    file_size_mb: int = Field(512, ge=1, le=65_536, description="largest file; also /tmp's size")
    processes: int = Field(256, ge=16, le=65_536, description="processes and threads at once")
    wall_seconds: int = Field(600, ge=1, le=86_400, description="wall-clock time of one run")


@dataclass(frozen=True)
class ProgramInputs:
    """What a program may see: features, teacher probabilities and settings; never labels."""

    train_features: np.ndarray
    teacher_probs: np.ndarray
    eval_features: np.ndarray
    n_classes: int
    seed: int
    recipe: Mapping[str, Any]  # the six RECIPE_FIELDS; other keys (e.g. `fixed`) are left out
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        train, evals, teacher = self.train_features, self.eval_features, self.teacher_probs
        if train.ndim != 2 or evals.ndim != 2 or train.shape[1] != evals.shape[1]:
            raise ValueError(f"features must be 2-D, equally wide: {train.shape}, {evals.shape}")
        if teacher.shape != (len(train), self.n_classes):
            raise ValueError(f"teacher_probs {teacher.shape} != ({len(train)}, {self.n_classes})")
        if missing := [name for name in RECIPE_FIELDS if name not in self.recipe]:
            raise ValueError(f"recipe lacks {missing}")

    def settings(self) -> dict[str, Any]:
        recipe = {name: self.recipe[name] for name in RECIPE_FIELDS}
        return dict(n_classes=int(self.n_classes), seed=int(self.seed), recipe=recipe,
                    params=dict(self.params))  # fmt: skip

    def save(self, run_dir: Path) -> None:
        """One .npy per array: ~5 ms to write, and the child maps them instead of reading."""
        for name in INPUT_ARRAYS:
            array = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            np.save(run_dir / f"{name}.npy", array, allow_pickle=False)


class ProgramRun(BaseModel):
    """One program run: validated probabilities, or one clear error; never an exception."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    probs: np.ndarray | None
    error: str | None
    cpu_seconds: float
    wall_seconds: float
    status: Literal["ok", "error", "invalid_output", "timeout", "cpu_limit", "killed"] = "ok"
    log: str = Field("", description="the tail of what the program printed")


# ---------------------------------------------------------------- the host side of one zygote

_UIDS_LOCK = threading.Lock()
_UIDS_IN_USE: set[int] = set()


class _Zygote:
    """One sandboxed server process and its private exchange directory (bound at /io)."""

    def __init__(self, level: Level, limits: SandboxLimits):
        self.limits, self.runs, self.buffer, self.process = limits, 0, b"", None
        self.home = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        self.io = self.home / "io"
        (self.io / "home").mkdir(parents=True)
        for directory in (self.home, self.io):
            directory.chmod(0o711)  # the unprivileged child may reach its run dir, not list
        tools = self.home / "sandbox"  # fresh copies, outside /io: no run can change them
        tools.mkdir(mode=0o755)
        script = tools / "zygote.py"
        shutil.copyfile(ZYGOTE_SCRIPT, script)
        shutil.copyfile(KIT_MODULE, tools / "w2s_kit.py")
        self.uid = _claim_uid() if runs_as_own_uid(level) else None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the zygote
        inside = "/io" if level == "full" else str(self.io)
        config = {"io": inside, "drop_uid": self.uid, "pid_namespace": level == "full",
                  "clean_dirs": ["/tmp", "/dev/shm"] if level == "full" else []}  # fmt: skip
        python = [sys.executable, "-B", "-s"]
        if level == "full":
            size = limits.file_size_mb * 2**20
            command = [*bwrap_command(bwrap_binary(), self.io, tools, size), *python]
            command.append("/sandbox/zygote.py")
        else:
            unshare = ["unshare", "-rn", "--"] if level == "network-only" else []
            command = [*unshare, *python, str(script)]
        try:
            self.process = subprocess.Popen(
                [*command, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env={**ZYGOTE_ENV, "HOME": f"{inside}/home"},  # never the host's environment
            )
            reply = self._read_reply(time.monotonic() + START_TIMEOUT_SECONDS)
        except OSError as error:
            reply = {"error": str(error)}
        if not (reply or {}).get("ready"):
            why = (reply or {}).get("error") or self.log_tail()
            self.close()
            raise SandboxUnavailable(f"the sandbox ({level}) did not start: {why}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def run(self, source: str, inputs: ProgramInputs, threads: int) -> ProgramRun:
        self.runs += 1
        run_dir = self.io / f"run-{self.runs}"
        (run_dir / "scratch").mkdir(mode=0o700, parents=True)
        (run_dir / "program.py").write_text(source, encoding="utf-8")
        inputs.save(run_dir)
        if self.uid is not None:
            for path in (run_dir, run_dir / "scratch"):
                os.chown(path, self.uid, self.uid)
        # Results are read through this handle with O_NOFOLLOW: the program owns the directory.
        run_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        limits = self.limits.model_dump()
        request = {"run": run_dir.name, "threads": threads, "limits": limits, **inputs.settings()}
        try:
            if (reply := self._ask(request)) is not None:
                return _collect(reply, run_fd, inputs, self.limits)
            why = f"the sandbox server died during the run: {self.log_tail()}"
            self.close()
            return ProgramRun(probs=None, error=clip_message(why), cpu_seconds=0.0,
                              wall_seconds=0.0, status="killed")  # fmt: skip
        finally:
            os.close(run_fd)
            shutil.rmtree(run_dir, ignore_errors=True)

    def _ask(self, request: dict) -> dict | None:
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except OSError:  # the server is gone; the caller says so
            return None
        return self._read_reply(time.monotonic() + self.limits.wall_seconds + REPLY_GRACE_SECONDS)

    def _read_reply(self, deadline: float) -> dict | None:
        """The next JSON line, or None if the server exited or missed the deadline."""
        stream = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([stream], [], [], remaining)[0]:
                return None
            if not (chunk := os.read(stream, 65536)):
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def log_tail(self) -> str:
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 1500))
        tail = self.stderr.read().decode(errors="replace").strip()
        return tail or f"no output (exit code {self.process and self.process.poll()})"

    def close(self) -> None:
        if self.process is not None:
            self.process.kill()  # bwrap --die-with-parent takes the whole sandbox with it
            self.process.wait()
            self.process.stdin.close()
            self.process.stdout.close()
        self.stderr.close()
        shutil.rmtree(self.home, ignore_errors=True)
        with _UIDS_LOCK:
            _UIDS_IN_USE.discard(self.uid)


def _remove_orphaned_folders() -> None:
    """Exchange folders of hosts that were killed (SIGKILL leaves no chance to clean up)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*-*"):
        pid = folder.name.removeprefix(TEMP_PREFIX).split("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def _claim_uid() -> int:
    with _UIDS_LOCK:
        base = UID_BASE + (os.getpid() % 2**22) * 64
        uid = next(base + slot for slot in range(64) if base + slot not in _UIDS_IN_USE)
        _UIDS_IN_USE.add(uid)
        return uid


# ---------------------------------------------------------------- a reply as a ProgramRun


def _collect(reply: dict, run_fd: int, inputs: ProgramInputs, limits: SandboxLimits) -> ProgramRun:
    status, probs = reply["status"], None
    if status == "ok":
        expected = (len(inputs.eval_features), inputs.n_classes)
        probs, error = read_output(run_fd, expected)
        status = "ok" if error is None else "invalid_output"
    elif status == "error":
        error = read_text(run_fd, "error.txt", MESSAGE_CHARS * 4)
        error = error or f"exited with code {reply['exit_code']} before returning"
        status = "invalid_output" if reply["exit_code"] == EXIT_BAD_RETURN else "error"
    else:
        error = {
            "timeout": f"timed out after {limits.wall_seconds} s (wall-clock limit)",
            "cpu_limit": f"exceeded the CPU limit of {limits.cpu_seconds} s",
        }.get(status, f"was killed by {reply['signal']}")
        if reply["signal"] == "SIGKILL" and status == "killed":
            error += " (out of memory on the host, or killed from outside)"
    return ProgramRun(
        probs=probs,
        error=clip_message(error) if error else None,
        cpu_seconds=reply["cpu_seconds"],
        wall_seconds=reply["wall_seconds"],
        status=status,
        log=read_text(run_fd, "program.log", MESSAGE_CHARS, tail=True),
    )


# ---------------------------------------------------------------- the pool


class Sandbox:
    """Runs programs on a pool of zygotes, one per concurrent caller. Thread-safe. `close()`, or
    the process exiting, stops them all. Make it in the process that uses it: a forked copy fails."""

    def __init__(self, limits: SandboxLimits | None = None, isolation: Isolation | None = None):
        self.limits = limits or SandboxLimits()
        self.isolation = isolation or detect_isolation()
        self._lock = threading.Lock()
        self._free: list[_Zygote] = []
        self._all: list[_Zygote] = []
        self._closed = False
        self._owner = os.getpid()
        _remove_orphaned_folders()
        # bwrap --die-with-parent watches the *thread* that started it, so zygotes are started
        # from one long-lived thread, not from a caller's thread that may end any time.
        self._launcher = ThreadPoolExecutor(1, thread_name_prefix="sandbox-launcher")
        self._finalizer = weakref.finalize(self, _stop, self._all, self._launcher)

    def warm(self) -> None:
        """Start one zygote now (2-4 s of imports), so the first run does not pay for it."""
        self._release(self._acquire())

    def run(self, source: str, inputs: ProgramInputs, threads: int = 1) -> ProgramRun:
        """Run `fit_predict(data)` from `source`. Whatever the program does becomes a ProgramRun;
        raises SandboxUnavailable only when the sandbox itself cannot start."""
        if not 1 <= threads <= 256:
            raise ValueError(f"threads must be 1..256, got {threads}")
        zygote = self._acquire()
        try:
            return zygote.run(source, inputs, threads)
        finally:
            self._release(zygote)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._free.clear()
        self._finalizer()

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _acquire(self) -> _Zygote:
        if os.getpid() != self._owner:
            raise SandboxUnavailable("this Sandbox belongs to another process; make a new one")
        with self._lock:
            if self._closed:
                raise SandboxUnavailable("the sandbox is closed")
            while self._free:
                if (zygote := self._free.pop()).alive():
                    return zygote
                self._forget(zygote)  # died since its last run: a new one is started below
        zygote = self._launcher.submit(_Zygote, self.isolation.level, self.limits).result()
        with self._lock:
            self._all.append(zygote)
        return zygote

    def _release(self, zygote: _Zygote) -> None:
        with self._lock:
            if zygote.alive() and not self._closed:
                self._free.append(zygote)
            else:
                self._forget(zygote)

    def _forget(self, zygote: _Zygote) -> None:
        if zygote in self._all:
            self._all.remove(zygote)
        zygote.close()


def _stop(zygotes: list[_Zygote], launcher: ThreadPoolExecutor) -> None:
    for zygote in list(zygotes):
        zygote.close()
    zygotes.clear()
    launcher.shutdown(wait=False)
