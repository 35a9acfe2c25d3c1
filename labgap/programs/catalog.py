"""The idea library: weak-to-strong algorithms from the literature, shipped as method programs.

Each file in `library/` is an ordinary method program (the same interface a user or an agent
writes), so the embedded agents can own one as a research direction and tune its `PARAMS`, and a
user can replicate one with `labgap run --method`.
"""

from functools import cache
from pathlib import Path

from labgap.programs.method import ProgramMethod, load_program

LIBRARY_DIR = Path(__file__).parent / "library"


def library_names() -> list[str]:
    return sorted(path.stem for path in LIBRARY_DIR.glob("*.py") if not path.stem.startswith("_"))


@cache
def library_program(name: str) -> ProgramMethod:
    """A library program at its declared defaults."""
    path = LIBRARY_DIR / f"{name}.py"
    if not path.is_file():
        raise KeyError(f"no library program {name!r}; the library has {library_names()}")
    return load_program(path)
