"""A Prefect API for command-line runs that shares one server with the worker processes."""

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def local_prefect_api() -> Iterator[str | None]:
    """Use the configured Prefect API, or start one temporary local server for this run.

    Without it each experiment worker process would start a temporary server of its own (slow,
    and their task runs would not appear beside the flow run).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL"):
        yield PREFECT_API_URL.value()
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield server.api_url
            # Deliver queued logs and events while the server is still up; otherwise the
            # process would spend a minute at exit retrying a server that is gone.
            APILogWorker.drain_all(timeout=30)
            EventsWorker.drain_all(timeout=30)
    finally:
        server.stop()
