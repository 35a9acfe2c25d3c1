"""The in-sandbox server that runs method programs: one fork per run, so no run pays import cost.

Run as a script inside the sandbox (`python zygote.py '<config json>'`); it never imports labgap.
It pre-imports numpy, scipy, sklearn and torch, then reads one JSON request per line on stdin and
answers one JSON line on stdout. Per request it forks a child that drops to an unprivileged uid
(when started as root), limits itself, maps the run's input arrays, executes `program.py` as a fresh
module and saves what `fit_predict(data)` returns. The host validates the output; this file only
reports how the child ended. No torch op runs here before a fork: torch's thread pools are created
lazily, so forking after `import torch` is safe.

RLIMIT_NPROC, measured on Linux 6.18 with the host running as root: the kernel never applies it
to uid 0, whatever the namespace. In bwrap's default user namespace (uid 0 mapped to 0) a child
forked 20 processes under a limit of 5, and, holding all capabilities there, could even unmount
the tmpfs hiding sklearn's datasets and read breast_cancer.csv. So as root the sandbox makes no
user namespace and the child switches to a uid of its own (chosen by the host, unique per zygote)
before any program code runs: it has no capabilities, RLIMIT_NPROC binds (threads count too; a fork
bomb stops at the limit), and one kill(-1) from that uid ends every process it left behind. Under
`unshare -rn` (network-only) only uid 0 is mapped, so as root the limit does not bind there. When
the host is not root the child keeps the host's uid, which is not root, so the limit binds.
"""

import contextlib
import ctypes
import json
import linecache
import os
import random
import resource
import select
import shutil
import signal
import sys
import time
import traceback
import types

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
ERROR_LINES = 40
EXIT_RAISED, EXIT_BAD_RETURN, EXIT_SETUP = 1, 2, 3  # the host reads 2 as invalid output

_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    _libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0)


THREAD_POOLS: list = []  # threadpoolctl's view of the loaded BLAS/OpenMP libraries


def preimport() -> None:
    """What most programs use, imported once here so forked children start warm."""
    import numpy  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.sparse  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.decomposition  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.mixture  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import threadpoolctl
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401 - the first optimizer imports it (~1 s)
    import torch.nn  # noqa: F401
    import torch.nn.functional  # noqa: F401
    import torch.optim  # noqa: F401
    import torch.utils.data  # noqa: F401
    import w2s_kit  # noqa: F401 - the helper offered to programs, beside this script

    THREAD_POOLS.append(threadpoolctl.ThreadpoolController())  # only reads; starts no thread


# ---------------------------------------------------------------- the child: one program run


def run_child(request: dict, run_dir: str, config: dict) -> None:
    """Never returns: even an exception escaping from here ends in os._exit, so a child can never
    re-enter the server loop."""
    code = EXIT_SETUP
    try:
        try:
            data, source = prepare_child(request, run_dir, config)
        except BaseException as error:  # noqa: BLE001 - anything here is a sandbox fault, say so
            write_error(run_dir, f"sandbox setup failed: {type(error).__name__}: {error}")
            return
        code = execute(source, data, run_dir, request["limits"]["memory_mb"])
    finally:
        os._exit(code)  # noqa: B012 - leaving this function any other way is the bug to prevent


def prepare_child(request: dict, run_dir: str, config: dict):
    import numpy as np

    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(
        os.path.join(run_dir, "program.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644
    )
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    with open(os.path.join(run_dir, "program.py"), encoding="utf-8") as file:
        source = file.read()
    inputs = {  # copy-on-write maps: free to load, and a program may still write to its arrays
        name: np.asarray(np.load(os.path.join(run_dir, f"{name}.npy"), mmap_mode="c"))
        for name in ("train_features", "teacher_probs", "eval_features")
    }
    scratch = os.path.join(run_dir, "scratch")
    os.chdir(scratch)
    threads = int(request["threads"])
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["HOME"] = os.environ["TMPDIR"] = scratch
    if config.get("drop_uid"):
        os.setgroups([])
        os.setgid(config["drop_uid"])
        os.setuid(config["drop_uid"])
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # after setuid, which clears it
    prctl(PR_SET_DUMPABLE, 0)  # no core files, no ptrace by other processes of this uid
    prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries cannot hand privileges back
    limit_resources(request["limits"])
    limit_threads(threads)
    seed = int(request["seed"])
    seed_everything(seed)
    recipe = types.SimpleNamespace(**request["recipe"])
    data = types.SimpleNamespace(
        train_features=inputs["train_features"],
        teacher_probs=inputs["teacher_probs"],
        eval_features=inputs["eval_features"],
        n_classes=int(request["n_classes"]),
        seed=seed,
        recipe=recipe,
        params=dict(request["params"]),
    )
    return data, source


def limit_resources(limits: dict) -> None:
    cpu = int(limits["cpu_seconds"])
    # SIGXCPU at the soft limit; SIGKILL 2 s later if the program ignores SIGXCPU.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_mb"] * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_size_mb"] * 2**20,) * 2)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def limit_threads(threads: int) -> None:
    """The zygote starts with one BLAS/OpenMP thread (fork safety); each run gets its own count."""
    import torch

    THREAD_POOLS[0].limit(limits=threads)  # found before forking: ~12 ms less per run
    torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def execute(source: str, data, run_dir: str, memory_mb: int) -> int:
    """Run the program and save its result; the exit code says how it ended."""
    import numpy as np

    module = types.ModuleType("program")
    module.__file__ = "program.py"
    sys.modules["program"] = module
    lines = source.splitlines(keepends=True)
    linecache.cache["program.py"] = (len(source), None, lines, "program.py")
    stage = "program.py raised {name} while loading"
    try:
        exec(compile(source, "program.py", "exec"), module.__dict__)
        fit_predict = getattr(module, "fit_predict", None)
        if not callable(fit_predict):
            write_error(run_dir, "program.py does not define fit_predict(data)")
            return EXIT_RAISED
        stage = "fit_predict raised {name}"
        result = fit_predict(data)
    except BaseException as error:  # noqa: BLE001 - whatever the program does is reported
        write_error(run_dir, describe_exception(error, stage, memory_mb))
        return EXIT_RAISED
    finally:
        flush_streams()
    try:
        if hasattr(result, "detach") and hasattr(result, "cpu"):
            result = result.detach().cpu().numpy()
        array = np.asarray(result)
        if array.dtype.kind not in "biuf":
            raise TypeError
    except Exception:  # noqa: BLE001 - any non-numeric result gets the same clear message
        write_error(run_dir, f"did not return an array of numbers (got {type(result).__name__})")
        return EXIT_BAD_RETURN
    expected = (len(data.eval_features), data.n_classes)
    if array.shape != expected:  # the host checks again; this spares saving a huge wrong array
        write_error(run_dir, f"returned shape {array.shape}, expected {expected}")
        return EXIT_BAD_RETURN
    np.save(os.path.join(run_dir, "output.npy"), array, allow_pickle=False)
    return 0


def describe_exception(error: BaseException, stage: str, memory_mb: int) -> str:
    """'fit_predict raised X: message', then the program's own frames (not the sandbox's)."""
    name = type(error).__name__
    if isinstance(error, MemoryError) and name != "MemoryError":
        name = f"MemoryError ({name})"
    headline = stage.format(name=name) + (f": {error}" if str(error) else "")
    if isinstance(error, MemoryError) or "can't allocate memory" in str(error):
        headline += f"\n(the sandbox's memory limit is {memory_mb} MB)"
    if isinstance(error, SyntaxError):  # where in program.py, with a caret; no frames
        return headline + "\n" + "".join(traceback.format_exception_only(error)).rstrip()
    frames = traceback.extract_tb(error.__traceback__)
    shown = [frame for frame in frames if frame.filename == "program.py"]
    if frames and frames[-1].filename not in ("program.py", __file__):
        shown.append(frames[-1])  # the library call that raised, for context
    trace = "".join(traceback.format_list(shown)).splitlines()[-ERROR_LINES:]
    return "\n".join([headline, "Traceback (most recent call last):", *trace])


def write_error(run_dir: str, message: str) -> None:
    with open(os.path.join(run_dir, "error.txt"), "w", encoding="utf-8") as file:
        file.write(message)


def flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a program may have closed or replaced them
            stream.flush()


# ---------------------------------------------------------------- the server: wait and clean up


def serve_one(request: dict, config: dict) -> dict:
    run_dir = os.path.join(config["io"], request["run"])
    limits = request["limits"]
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        run_child(request, run_dir, config)
    timed_out = not wait_for_exit(pid, started + limits["wall_seconds"])
    if timed_out:
        kill_group(pid)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    kill_strays(pid, config)
    clean_private_dirs(config)
    cpu = usage.ru_utime + usage.ru_stime
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    if timed_out:
        outcome = "timeout"
    elif sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= 0.8 * limits["cpu_seconds"]):
        # rusage runs ~10% below the kernel's own CPU clock; SIGKILL means SIGXCPU was ignored
        outcome = "cpu_limit"
    elif sig is not None:
        outcome = "killed"
    else:
        outcome = "ok" if exit_code == 0 else "error"
    return {
        "status": outcome,
        "cpu_seconds": round(cpu, 4),
        "wall_seconds": round(wall, 4),
        "signal": signal.Signals(sig).name if sig else None,
        "exit_code": exit_code,
    }


def wait_for_exit(pid: int, deadline: float) -> bool:
    """True when the child exited before the deadline (it is left for wait4 to reap)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # Linux before 5.3: poll
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
            time.sleep(0.005)
        return False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([pidfd], [], [], remaining)
            if ready:
                return True
    finally:
        os.close(pidfd)


def kill_group(pid: int) -> None:
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        with contextlib.suppress(ProcessLookupError):
            target()


def kill_strays(pid: int, config: dict) -> None:
    """Kill whatever the run left behind, even processes that left its group or double-forked:
    they are all either of the run's uid or, via the subreaper, this server's children."""
    kill_group(pid)
    if not child_pids():  # orphans come to this subreaper: none means nothing was left behind
        return
    if config.get("drop_uid"):
        killer = os.fork()
        if killer == 0:
            try:
                os.setgroups([])
                os.setgid(config["drop_uid"])
                os.setuid(config["drop_uid"])
                os.kill(-1, signal.SIGKILL)  # every process of that uid (not this one)
            finally:
                os._exit(0)
        os.waitpid(killer, 0)
    for _ in range(100):
        children = child_pids()
        if not children:
            return
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)  # after this its own children are ours (subreaper)


def child_pids() -> list[int]:
    me = os.getpid()
    with open(f"/proc/{me}/task/{me}/children") as file:
        return [int(pid) for pid in file.read().split()]


def clean_private_dirs(config: dict) -> None:
    """Empty the sandbox's own /tmp and /dev/shm so no run sees what an earlier one left."""
    for directory in config.get("clean_dirs", []):
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


def main() -> None:
    config = json.loads(sys.argv[1])
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_DUMPABLE, 0)
    if os.getppid() == 1 and not config.get("pid_namespace"):
        sys.exit("the host exited before the sandbox started")
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints from imports go to the log, never into the protocol
    started = time.monotonic()
    preimport()
    threads = len(os.listdir("/proc/self/task"))  # 1: nothing else runs when we fork
    ready = {
        "ready": True,
        "import_seconds": round(time.monotonic() - started, 3),
        "threads": threads,
    }
    replies.write(json.dumps(ready) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "exit":
            break
        replies.write(json.dumps(serve_one(request, config)) + "\n")


if __name__ == "__main__":
    main()
