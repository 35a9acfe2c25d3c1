"""Where labgap keeps its data, caches and default database.

Everything generated lives under one data directory (git-ignored), chosen by `LABGAP_DATA_DIR`
or defaulting to `./data`, so a run never writes outside the project unless told to.
"""

import os
from pathlib import Path


def data_dir() -> Path:
    return Path(os.environ.get("LABGAP_DATA_DIR", "data")).resolve()


def cache_dir(*parts: str) -> Path:
    path = data_dir().joinpath("cache", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db_path() -> Path:
    return data_dir() / "labgap.duckdb"
