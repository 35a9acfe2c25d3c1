"""The dispatcher: the longest ready run first, never more at once than its limit, a run only
after what it waits for, runs not yet started cancelled when the study stops, and idle-time work
only on a worker that would otherwise idle."""

import threading
from collections.abc import Iterator
from concurrent.futures import Future, as_completed
from contextlib import contextmanager
from contextvars import copy_context

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from flows.dispatch import Dispatcher

pytestmark = pytest.mark.usefixtures("prefect_harness")

started: list[str] = []
gates: dict[str, threading.Event] = {}


@task(cache_policy=NO_CACHE)
def step(name: str) -> str:
    started.append(name)
    gates[name].wait(10)
    return name


def queue(dispatcher, runner, name, seconds, after=None, idle=False) -> Future:
    gates.setdefault(name, threading.Event())
    submit = lambda: runner.submit(step, {"name": name})  # noqa: E731
    return dispatcher.add(seconds, submit, copy_context(), after, idle)


@contextmanager
def dispatching(limit: int | None) -> Iterator[tuple[Dispatcher, ThreadPoolTaskRunner]]:
    """A dispatcher over four runner threads, with nothing started or gated yet."""
    started.clear()
    gates.clear()
    with ThreadPoolTaskRunner(max_workers=4) as runner:
        dispatcher = Dispatcher(limit)
        yield dispatcher, runner
        dispatcher.close()


def until(condition, seconds: float = 10.0) -> bool:
    """Polls `condition` (threads start late on a loaded machine)."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


def settled(condition) -> bool:
    """`condition` holds, and still does 0.2 s later: nothing more has started meanwhile."""
    if not until(condition):
        return False
    threading.Event().wait(0.2)
    return condition()


def test_the_longest_ready_run_starts_first_and_no_more_than_the_limit_run_at_once():
    flow(longest_first)()


def longest_first():
    with dispatching(1) as (dispatcher, runner):
        first = queue(dispatcher, runner, "first", 1.0)
        assert until(lambda: started == ["first"])
        short, long_, middle = (
            queue(dispatcher, runner, "short", 1.0),
            queue(dispatcher, runner, "long", 9.0),
            queue(dispatcher, runner, "middle", 5.0),
        )
        assert settled(lambda: started == ["first"])  # the limit: one at a time
        for name in ["first", "long", "middle", "short"]:
            gates[name].set()
        for future in [first, long_, middle, short]:
            assert future.result(10).result() in {"first", "long", "middle", "short"}
    assert started == ["first", "long", "middle", "short"]


def test_a_run_waits_for_what_it_needs_and_close_cancels_what_has_not_started():
    flow(waits_and_cancels)()


def waits_and_cancels():
    with dispatching(None) as (dispatcher, runner):
        teacher = Future()
        student = queue(dispatcher, runner, "student", 9.0, after=teacher)
        other = queue(dispatcher, runner, "other", 1.0)
        gates["other"].set()
        assert other.result(10).result() == "other"
        assert started == ["other"]  # the student's teacher is not ready
        teacher.set_result(None)
        gates["student"].set()
        assert student.result(10).result() == "student"
        never = queue(dispatcher, runner, "never", 1.0, after=Future())
        dispatcher.close()
        assert never.cancelled() and list(as_completed([never], timeout=5)) == [never]
        with pytest.raises(RuntimeError, match="stopped"):
            queue(dispatcher, runner, "late", 1.0)
    assert started == ["other", "student"]


def test_idle_time_work_runs_only_on_a_worker_that_would_idle_and_can_be_withdrawn():
    flow(idle_time_work)()


def idle_time_work():
    with dispatching(2) as (dispatcher, runner):  # one worker, plus one queued in the runner
        busy = queue(dispatcher, runner, "busy", 1.0)
        filler = queue(dispatcher, runner, "filler", 9.0, idle=True)
        queued = queue(dispatcher, runner, "queued", 1.0)
        assert settled(lambda: sorted(started) == ["busy", "queued"])  # no idle-time run queued
        gates["busy"].set()
        gates["queued"].set()
        assert busy.result(10).result() == "busy" and queued.result(10).result() == "queued"
        gates["filler"].set()
        assert filler.result(10).result() == "filler"  # the worker would have idled
        blocker = queue(dispatcher, runner, "blocker", 1.0)
        late = queue(dispatcher, runner, "late", 9.0, idle=True)
        threading.Event().wait(0.2)
        dispatcher.stop_idle_work()
        later = queue(dispatcher, runner, "later", 1.0, idle=True)
        assert late.cancelled() and later.cancelled()
        assert set(as_completed([late, later], timeout=5)) == {late, later}  # waiters hear it
        gates["blocker"].set()
        assert blocker.result(10).result() == "blocker"
    assert sorted(started[:2]) == ["busy", "queued"]  # both in threads: either may start first
    assert started[2:] == ["filler", "blocker"]


def test_an_idle_time_run_that_is_wanted_now_starts_on_the_next_free_worker():
    flow(promoted)()


def promoted():
    with dispatching(2) as (dispatcher, runner):  # one worker, plus one queued in the runner
        busy = queue(dispatcher, runner, "busy", 1.0)
        wanted = queue(dispatcher, runner, "wanted", 1.0, idle=True)
        assert settled(lambda: started == ["busy"])  # idle-time work waits while the worker is busy
        dispatcher.promote(wanted)
        # beside the busy one, as foreground work would: well before busy's gate times out (10 s)
        assert until(lambda: started == ["busy", "wanted"], seconds=5)
        for name in ["busy", "wanted"]:
            gates[name].set()
        assert wanted.result(10).result() == "wanted" and busy.result(10).result() == "busy"
        dispatcher.stop_idle_work()
        assert not wanted.cancelled()
