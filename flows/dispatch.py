"""The order in which a study's task runs reach the workers: the longest first, each only once it
can start, and no more at once than the workers take.

Agents of a round and tasks of a look ask for experiments at the same time, each in its own
thread. Handed to the task runner as they come, the runs would queue first come, first served:
a long trial submitted last leaves the other workers idle while it finishes (a search round's
and a look's tail), and an experiment waiting for its teacher and ceiling would hold a worker
while ready ones queue behind it. The dispatcher keeps the runs that are not yet running, starts
the longest ready one whenever a worker frees (one more than the workers, so the next is already
queued in the runner when one frees), and submits each in its asker's Prefect context, so the UI
shows it under the stage or agent round that asked. Runs a later stage will want can wait
here as idle-time work, started only when a worker would otherwise idle (a search round's tail,
the flow's own work between rounds) and withdrawn when that stage comes. The order changes when a
trial runs, never its numbers.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextvars import Context
from dataclasses import dataclass, field
from itertools import count

from prefect.futures import PrefectFuture


@dataclass
class Pending:
    """A task run waiting for a worker: `started` receives its Prefect future once it has run."""

    seconds: float
    arrival: int
    submit: Callable[[], PrefectFuture]
    context: Context
    after: Future | None = None  # what must have finished first (its teacher and ceiling)
    idle: bool = False  # wanted later: only on a worker that would otherwise idle
    started: Future = field(default_factory=Future)

    @property
    def ready(self) -> bool:
        return self.after is None or self.after.done()


class Dispatcher:
    """Thread-safe; `limit` None starts every ready run at once (a Dask cluster schedules its
    own workers)."""

    def __init__(self, limit: int | None):
        self._limit = limit
        self._waiting: list[Pending] = []
        self._running = 0
        self._arrivals = count()
        self._changed = threading.Condition()
        self._closed = False
        self._idle_stopped = False
        self._thread = threading.Thread(target=self._dispatch, name="dispatch", daemon=True)
        self._thread.start()

    def add(
        self,
        seconds: float,
        submit: Callable[[], PrefectFuture],
        context: Context,
        after: Future | None = None,
        idle: bool = False,
    ) -> Future:
        """Queue a run estimated at `seconds`; the future resolves to its finished Prefect future."""
        with self._changed:
            if self._closed:
                raise RuntimeError("the study's experiments have stopped")
            pending = Pending(seconds, next(self._arrivals), submit, context, after, idle)
            if idle and self._idle_stopped:
                _cancel(pending.started)
                return pending.started
            self._waiting.append(pending)
            if after is not None:
                after.add_done_callback(lambda _: self._notify())
            self._changed.notify()
        return pending.started

    def close(self) -> None:
        """Stop starting runs; those not started are cancelled (their askers see it at once)."""
        with self._changed:
            self._closed = True
            waiting, self._waiting = self._waiting, []
            self._changed.notify()
        for pending in waiting:
            _cancel(pending.started)
        self._thread.join()

    def promote(self, started: Future) -> None:
        """A run queued as idle-time work is wanted now."""
        with self._changed:
            for pending in self._waiting:
                if pending.started is started:
                    pending.idle = False
            self._changed.notify()

    def stop_idle_work(self) -> None:
        """Idle-time runs not started yet, and any asked for later, are cancelled; the started
        ones finish."""
        with self._changed:
            self._idle_stopped = True
            idle = [p for p in self._waiting if p.idle]
            self._waiting = [p for p in self._waiting if not p.idle]
        for pending in idle:
            _cancel(pending.started)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify()

    def _next(self) -> Pending | None:
        """The longest ready run, the earliest asked among equals, if a worker is free; an
        idle-time run only if a worker would idle (never into the runner's queue, and never on
        a cluster of unknown size)."""
        if self._limit is not None and self._running >= self._limit:
            return None
        idle_worker = self._limit is not None and self._running < self._limit - 1
        ready = [p for p in self._waiting if p.ready and (idle_worker or not p.idle)]
        if not ready:
            return None
        best = min(ready, key=lambda p: (p.idle, -p.seconds, p.arrival))
        self._waiting.remove(best)
        self._running += 1
        return best

    def _dispatch(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (pending := self._next()) is None:
                    self._changed.wait()
                if self._closed:
                    return
            self._start(pending)

    def _start(self, pending: Pending) -> None:
        try:
            future = pending.context.run(pending.submit)
        except BaseException as error:  # the runner refused it: the asker hears why
            self._finished()
            pending.started.set_exception(error)
            return

        def finished(done: PrefectFuture) -> None:
            self._finished()
            pending.started.set_result(done)  # a started run is never cancelled by `close`

        future.add_done_callback(finished)

    def _finished(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify()


def _cancel(future: Future) -> None:
    """Cancelled and announced: `as_completed` and `wait` hear of a cancellation only when it is
    announced (an executor does so when it would have started the work)."""
    future.cancel()
    future.set_running_or_notify_cancel()
