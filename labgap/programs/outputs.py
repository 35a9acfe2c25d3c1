"""Reading what a method program wrote, on the host: its output array, its messages and log.

The run directory belongs to the program, so every file is opened through the run's directory
handle without following links, and an array's header is checked before it is loaded. Whatever
comes back is validated here as probabilities, never trusted from inside the sandbox.
"""

import os
import stat

import numpy as np

MESSAGE_CHARS = 2000


def _open_result(run_fd: int, name: str):
    """A regular file the program wrote (never a link to a host file), or None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=run_fd)
    except OSError:
        return None
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
        return os.fdopen(fd, "rb")
    os.close(fd)
    return None


def read_text(run_fd: int, name: str, limit: int, tail: bool = False) -> str:
    if (file := _open_result(run_fd, name)) is None:
        return ""
    with file:
        if tail:
            file.seek(max(0, os.fstat(file.fileno()).st_size - limit))
        return file.read(limit).decode(errors="replace").strip()


def read_output(run_fd: int, expected: tuple[int, int]) -> tuple[np.ndarray | None, str | None]:
    if (file := _open_result(run_fd, "output.npy")) is None:
        return None, "did not return an array (no output was saved)"
    with file:
        try:
            version = np.lib.format.read_magic(file)
            header = np.lib.format.read_array_header_1_0
            if version != (1, 0):
                header = np.lib.format.read_array_header_2_0
            shape, _, dtype = header(file)  # checked before loading: the file may be huge
            if dtype.kind not in "biuf":
                return None, f"did not return an array of numbers (dtype {dtype})"
            if tuple(shape) != expected:
                return None, f"returned shape {tuple(shape)}, expected {expected}"
            file.seek(0)
            array = np.lib.format.read_array(file, allow_pickle=False)
        except (ValueError, OSError) as error:
            return None, f"did not return a readable array ({error})"
    return validate_probabilities(array.astype(np.float64))


def validate_probabilities(array: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """Finite, non-negative rows that sum to 1, with tolerances for float32 rounding."""
    if bad_rows := int((~np.isfinite(array)).any(axis=1).sum()):
        return None, f"returned non-finite values (NaN/inf) in {bad_rows} rows"
    if array.size and array.min() < -1e-6:
        return None, f"returned negative probabilities (lowest {array.min():.3g})"
    sums = array.sum(axis=1)
    worst = int(np.abs(sums - 1.0).argmax()) if len(sums) else 0
    if len(sums) and abs(sums[worst] - 1.0) > 1e-3:
        return None, f"rows do not sum to 1 (worst row sums to {sums[worst]:.6g})"
    return np.clip(array, 0.0, None).astype(np.float32), None


def clip_message(text: str) -> str:
    if len(text) <= MESSAGE_CHARS:
        return text
    head = MESSAGE_CHARS // 4
    return text[:head] + "\n[...]\n" + text[-(MESSAGE_CHARS - head - 7) :]
