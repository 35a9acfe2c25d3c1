"""The analysts' snapshot: a read-only copy of the study database that never blocks the writer.

DuckDB locks a file across processes: while the flow holds `labgap.duckdb` open read-write nobody
else can open it, and a reader holding it makes the next study fail. So analysts read
`labgap.analysts.duckdb` instead. It is copied from the writer's connection in one transaction (a
consistent state, views included), written under a temporary name in the same folder and renamed
over the old copy: a reader keeps the file it opened, and a publication killed halfway leaves the
previous copy in place (its temporary file is removed by the next publication).

Stage ends publish at once; rows that stream in (trials, scoring calls, posts, messages) publish
at most every `PUBLISH_INTERVAL` seconds, and a timer publishes the last of them when no further
write comes, so no recorded row is more than that (plus the time of two publications) behind.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl

from labgap.errors import LabgapInputError
from labgap.paths import default_db_path

PUBLISH_INTERVAL = 30.0
"""Seconds between publications while rows stream in: bounds both their cost and staleness."""

_ALIAS = "labgap_analysts_snapshot"

log = logging.getLogger(__name__)


def analysts_path(db: Path | str | None = None) -> Path:
    """`data/labgap.duckdb` -> `data/labgap.analysts.duckdb`: the file analysts read."""
    path = Path(db) if db else default_db_path()
    return path.with_name(f"{path.stem}.analysts{path.suffix}")


def _temporary_files(target: Path) -> list[Path]:
    temporary = target.with_name(f"{target.name}.tmp")
    return [temporary, temporary.with_name(f"{temporary.name}.wal")]


def publish_snapshot(connection: duckdb.DuckDBPyConnection, target: Path) -> None:
    """Copy the committed state of `connection`'s database to `target`, replacing it atomically."""
    temporary, temporary_wal = _temporary_files(target)
    for leftover in (temporary, temporary_wal):
        leftover.unlink(missing_ok=True)
    cursor = connection.cursor()
    try:
        source = _quote(cursor.execute("SELECT current_database()").fetchall()[0][0], '"')
        file = _quote(str(temporary), "'")
        cursor.execute(f"ATTACH {file} AS {_ALIAS}")
        try:
            cursor.execute("BEGIN TRANSACTION")
            cursor.execute(f"COPY FROM DATABASE {source} TO {_ALIAS}")
            cursor.execute("COMMIT")
        finally:
            cursor.execute(f"DETACH DATABASE IF EXISTS {_ALIAS}")
    finally:
        cursor.close()
    _fsync(temporary)
    os.replace(temporary, target)
    _fsync(target.parent)


def _quote(name: str, mark: str) -> str:
    return f"{mark}{name.replace(mark, mark * 2)}{mark}"


def _fsync(path: Path) -> None:
    """On disk before the rename (file) and the rename itself (folder): a crash keeps a whole copy."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class SnapshotPublisher:
    """Decides when the writer's database is published to the analysts' file.

    `stage_recorded` publishes now; `rows_recorded` publishes when the last publication is at least
    `interval` seconds old and otherwise arms one timer for when it will be. `close` publishes what
    is still pending. A failed publication is logged and retried later: the study's own rows are
    already safe in its database, so the study goes on.
    """

    def __init__(
        self,
        connection: duckdb.DuckDBPyConnection,
        target: Path,
        interval: float = PUBLISH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[float, Callable[[], None]], threading.Timer] = threading.Timer,
    ):
        self.connection = connection
        self.target = target
        self.interval = interval
        self._clock = clock
        self._timer_factory = timer
        self._timer: threading.Timer | None = None
        self._last: float | None = None
        self._pending = False
        self._closed = False
        self._lock = threading.Lock()

    def stage_recorded(self) -> None:
        with self._lock:
            self._publish()

    def rows_recorded(self) -> None:
        with self._lock:
            self._pending = True
            wait = 0.0 if self._last is None else self._last + self.interval - self._clock()
            if wait <= 0:
                self._publish()
            elif self._timer is None:
                self._timer = self._timer_factory(wait, self._publish_pending)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._publish()
            self._closed = True
            self._cancel_timer()

    def _publish_pending(self) -> None:
        with self._lock:
            self._timer = None
            if self._pending and not self._closed:
                self._publish()

    def _publish(self) -> None:
        """Timed from its end: even a publication slower than the interval leaves the study
        `interval` seconds of work before the next streamed one."""
        self._cancel_timer()
        try:
            publish_snapshot(self.connection, self.target)
        except (duckdb.Error, OSError) as error:
            log.warning("analysts' snapshot %s not refreshed: %s", self.target, error)
            self._pending = True
        else:
            self._pending = False
        self._last = self._clock()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def read_snapshot(db: Path | str | None, sql: str) -> pl.DataFrame:
    """Run one query on the analysts' file of `db`, read-only and without touching other files."""
    path = analysts_path(db)
    if not path.exists():
        raise LabgapInputError(
            f"no analysts' snapshot at {path} yet: it is published by a study (`labgap run`) or "
            "`labgap experiment` writing to that database; run one first"
        )
    try:
        connection = duckdb.connect(
            str(path), read_only=True, config={"enable_external_access": False}
        )
        try:
            result = connection.sql(sql)
            return pl.DataFrame() if result is None else result.pl()
        finally:
            connection.close()
    except duckdb.Error as error:
        raise LabgapInputError(_one_line(error)) from error


def _one_line(error: duckdb.Error) -> str:
    """DuckDB's message without its query excerpt and caret lines, which only make sense aligned."""
    lines = (line.strip() for line in str(error).splitlines())
    return " ".join(
        line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}
    )
