"""Small read helpers the tests share."""

from labgap.store.connection import Store


def count_rows(store: Store, table: str) -> int:
    return store.query(f"SELECT count(*) AS n FROM {table}")["n"][0]
