"""The processes a benchmark starts and watches: a Prefect server of its own, a command in its own
session with timestamped output lines, and the CPU each process tree actually got."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, int]]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields the API
    URL and the server's pid. The server and its children are stopped by process group."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(home / "server.log", "w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError(
                        f"prefect server exited; see {home / 'server.log'}"
                    ) from None
                time.sleep(0.25)
        yield url, server.pid
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 20) -> None:
    """Stop a process we started in its own session, and its children, by its group id."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def timed_lines(command: list[str], env: dict):
    """Start `command` in its own session; yield (seconds since start, line) as lines arrive."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**env, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return process, ((time.perf_counter() - started, line) for line in process.stdout)


def first(lines: list[tuple[float, str]], text: str) -> float:
    return next((t for t, line in lines if text in line), float("nan"))


class CpuSampler:
    """CPU seconds of process trees, sampled every half second until stopped (a process's last
    half second before it exits can be missed): the flow process, its descendants (the worker
    processes and their sandboxes) and the Prefect server, beside the whole machine's. What a
    process had used before the sampler started (the server's start-up) is not counted."""

    def __init__(self, flow_pid: int, server_pid: int):
        self.roots = {"flow process": flow_pid, "server": server_pid}
        self.machine = psutil.cpu_times()
        self.before = self._sample()
        self.seen = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, tuple[str, float]]:
        found = {}
        for role, pid in self.roots.items():
            with suppress(psutil.Error):
                root = psutil.Process(pid)
                for process in [root, *root.children(recursive=True)]:
                    name = role if process.pid == pid or role == "server" else "workers"
                    with suppress(psutil.Error):
                        found[process.pid] = (name, sum(process.cpu_times()[:2]))
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.seen.update(self._sample())

    def stop(self) -> dict[str, float]:
        """CPU seconds by role, and the machine's busy CPU seconds over the same time."""
        self._stop.set()
        self._thread.join()
        totals = Counter()
        for pid, (role, seconds) in self.seen.items():
            totals[role] += seconds - self.before.get(pid, (role, 0.0))[1]
        now = psutil.cpu_times()
        idle = now.idle + now.iowait - self.machine.idle - self.machine.iowait
        totals["machine"] = sum(now) - sum(self.machine) - idle
        return totals
