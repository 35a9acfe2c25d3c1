"""The DuckDB connection: one writer, transactions, idempotent inserts by natural key.

Every table has a primary key made of natural identifiers (study, task, method hash, seed, ...),
and every write is `INSERT OR IGNORE ... BY NAME` inside a transaction, so writing the same result
twice (a retried task, a re-run study) leaves exactly one row, and a failed batch leaves none.
Analysts never open this file: they read the snapshot it publishes (`labgap.store.snapshot`).
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from labgap.paths import default_db_path
from labgap.store.schema import MIGRATIONS, SCHEMA_VERSION, TABLES, VIEWS
from labgap.store.snapshot import SnapshotPublisher, analysts_path

WRITE_ATTEMPTS = 4
TRANSIENT_WRITE_ERRORS = (duckdb.IOException, duckdb.TransactionException)
"""A write that fails on I/O or a transaction conflict (the snapshot timer's thread shares the
connection) is rolled back whole and tried again; anything else is a bug or bad data."""


class Store:
    """The single writer of one DuckDB file. Open it in the process that owns the flow."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_db_path()
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = duckdb.connect(str(self.path))
        except duckdb.IOException as error:
            raise RuntimeError(
                f"cannot open {self.path}: {error}. Another process may be writing to it; "
                "labgap keeps one writer per database file."
            ) from error
        self.ensure_schema()
        # Publishes the analysts' copy when a recorder says so; idle in a store nobody records to.
        self.snapshots = (
            None
            if str(self.path) == ":memory:"
            else SnapshotPublisher(self.connection, analysts_path(self.path))
        )

    def ensure_schema(self) -> None:
        """Create what is missing, migrate an older schema; refuse one this version cannot read."""
        with self.transaction() as cursor:
            existing = {row[0] for row in cursor.execute("SHOW TABLES").fetchall()}
            found = None
            if existing and "schema_info" in existing:
                found = cursor.execute("SELECT max(version) FROM schema_info").fetchall()[0][0]
            steps = range((found or 0) + 1, SCHEMA_VERSION + 1)
            if existing and found and found < SCHEMA_VERSION and set(steps) <= set(MIGRATIONS):
                for version in steps:
                    for statement in MIGRATIONS[version]:
                        cursor.execute(statement)
                cursor.execute(f"INSERT OR IGNORE INTO schema_info VALUES ({SCHEMA_VERSION})")
                found = SCHEMA_VERSION
            if existing and found != SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by labgap schema version {found or 'unknown'}; this "
                    f"version reads schema {SCHEMA_VERSION}. Use a new --db file (or move this one "
                    "aside) to start a fresh database."
                )
            for table, columns in TABLES.items():
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
            cursor.execute(f"INSERT OR IGNORE INTO schema_info VALUES ({SCHEMA_VERSION})")
            for view, query in VIEWS.items():
                cursor.execute(f"CREATE OR REPLACE VIEW {view} AS {query}")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = self.connection.cursor()
        cursor.execute("BEGIN TRANSACTION")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        else:
            cursor.execute("COMMIT")
        finally:
            cursor.close()

    def insert(self, table: str, frame: pl.DataFrame, cursor=None) -> int:
        """Insert rows not yet present (by primary key); returns how many were new."""
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        if frame.height == 0:
            return 0
        if cursor is not None:
            return self._insert_rows(cursor, table, frame)
        attempt = 1
        while True:
            try:
                with self.transaction() as own_cursor:
                    return self._insert_rows(own_cursor, table, frame)
            except TRANSIENT_WRITE_ERRORS:
                if attempt == WRITE_ATTEMPTS:
                    raise
                time.sleep(0.05 * 2**attempt)
                attempt += 1

    def _insert_rows(self, cursor, table: str, frame: pl.DataFrame) -> int:
        before = cursor.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        cursor.register("incoming_rows", frame.to_arrow())
        cursor.execute(f"INSERT OR IGNORE INTO {table} BY NAME SELECT * FROM incoming_rows")
        cursor.unregister("incoming_rows")
        return cursor.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] - before

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        cursor = self.connection.cursor()
        try:
            return cursor.sql(sql, params=params or None).pl()
        finally:
            cursor.close()

    def close(self) -> None:
        """Rows recorded since the last publication reach the analysts' copy before closing."""
        if self.snapshots is not None:
            self.snapshots.close()
        self.connection.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
