"""A study's flow run as Prefect recorded it, turned into a timeline of worker time.

Prefect's task-run records are the honest clock: every experiment and every teacher-and-ceiling
preparation is a task run, Running while a worker process computes it, and the stage,
agent-round and quality-gate task runs of the flow process mark where the study was. This module
reads a flow run back from the Prefect server the benchmark started (`processes.prefect_server`,
so the records outlive the run) and derives stage windows, idle gaps and a list-scheduling model
of the same work on N workers.
"""

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass

WORKER_KINDS = {"run_experiment": "experiment", "prepare_reference": "prepare"}
"""Task keys (function names) of the task runs whose work a worker process computes."""


@dataclass(frozen=True)
class Run:
    """One task run, its times in seconds since the flow run began."""

    id: str
    name: str
    kind: str  # experiment, prepare, or the flow process's: stage, agent-round, gate, other
    start: float
    end: float
    waits_for: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class FlowRecord:
    wall: float
    runs: list[Run]
    logs: list[tuple[float, str]]

    @property
    def workers_runs(self) -> list[Run]:
        return [run for run in self.runs if run.kind in WORKER_KINDS.values()]


def read_flow_run(flow_name: str) -> FlowRecord:
    """The latest run of `flow_name` on the configured API, with every task run
    and log line; waits until the server has recorded every task run's end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort, LogSort

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]
        by_run = TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run.id]))
        for _ in range(60):  # task-run ends arrive as events, a little after the flow ends
            task_runs = _pages(
                lambda offset: client.read_task_runs(task_run_filter=by_run, offset=offset)
            )
            if task_runs and all(run.end_time for run in task_runs):
                break
            time.sleep(1)
        logs = _pages(
            lambda offset: client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])),
                offset=offset,
                sort=LogSort.TIMESTAMP_ASC,
            )
        )
    origin = flow_run.start_time

    def since(moment) -> float:
        return (moment - origin).total_seconds()

    runs = [
        Run(
            str(run.id),
            run.name,
            _kind(run.task_key, run.name),
            since(run.start_time),
            since(run.end_time),
            tuple(str(i.id) for i in run.task_inputs.get("wait_for", []) if hasattr(i, "id")),
        )
        for run in task_runs
        if run.start_time and run.end_time
    ]
    return FlowRecord(
        since(flow_run.end_time),
        sorted(runs, key=lambda r: r.start),
        [(since(x.timestamp), x.message) for x in logs],
    )


def _pages(read, size: int = 200) -> list:
    rows, offset = [], 0
    while page := read(offset):
        rows += page
        offset += len(page)
        if len(page) < size:
            break
    return rows


def _kind(task_key: str, name: str) -> str:
    function = task_key.rsplit("-", 1)[0]
    if function in WORKER_KINDS:
        return WORKER_KINDS[function]
    if re.match(r"\d-", name):
        return "stage"
    if re.match(r"agent\d+-round\d+", name):
        return "agent-round"
    return "gate" if name.startswith("gate-") else "other"


def segments(record: FlowRecord) -> list[tuple[str, float, float]]:
    """The flow run cut where the study moves on: each stage, each search round, each look."""
    stage = {run.name.rsplit("-", 1)[0]: run for run in record.runs if run.kind == "stage"}
    marks = [(0.0, "start-up: plan, worker pool")]
    search = stage.get("2-search") or stage.get("2-given-method")
    if search:
        marks.append(
            (search.start, "search: vanilla baseline" if "2-search" in stage else "given method")
        )
        rounds: dict[int, float] = {}
        for run in record.runs:
            if run.kind == "agent-round":
                number = int(run.name.rsplit("round", 1)[1])
                rounds[number] = min(rounds.get(number, run.start), run.start)
        marks += [(start, f"search: round {n + 1}") for n, start in sorted(rounds.items())]
        marks.append((search.end, "leaderboard gate"))
    if known := stage.get("3-known-methods"):
        marks.append((known.start, "known-methods tuning"))
    if replicate := stage.get("3-confirm-and-transfer"):
        marks.append((replicate.start, "look 1: every task"))
        looks = [(t, m.split("next look: ", 1)[1]) for t, m in record.logs if "next look: " in m]
        marks += [(t, f"look {k}: {what}") for k, (t, what) in enumerate(looks, start=2)]
        marks.append((replicate.end, "analyse, report"))
    marks.sort()
    ends = [start for start, _ in marks[1:]] + [record.wall]
    return [(label, start, end) for (start, label), end in zip(marks, ends, strict=True)]


def busy(runs: list[Run], start: float, end: float) -> float:
    """Worker seconds spent inside [start, end)."""
    return sum(max(0.0, min(run.end, end) - max(run.start, start)) for run in runs)


@dataclass(frozen=True)
class Slice:
    """A stretch in which the same worker task runs ran. `ready` counts experiments whose own
    preparation had finished (so they had been submitted) but which had not started yet."""

    start: float
    end: float
    running: tuple[Run, ...]
    ready: int

    def idle(self, workers: int) -> dict[str, float]:
        """Idle worker-seconds by cause: ready work not yet started (dispatch), no worker task
        run at all and nothing ready (the flow process alone), or nothing else ready."""
        idle, seconds = max(0, workers - len(self.running)), self.end - self.start
        dispatch = min(idle, self.ready)
        rest = "alone" if not self.running else "nothing ready"
        return {"dispatch": dispatch * seconds, rest: (idle - dispatch) * seconds}


def slices(record: FlowRecord) -> list[Slice]:
    runs = record.workers_runs
    ends = {run.id: run.end for run in runs}
    ready_at = {
        run.id: max(ends[w] for w in run.waits_for if w in ends)
        for run in runs
        if run.kind == "experiment" and any(w in ends for w in run.waits_for)
    }
    times = sorted({0.0, record.wall, *(r.start for r in runs), *(r.end for r in runs)})
    return [
        Slice(
            a,
            b,
            tuple(r for r in runs if r.start <= a < r.end),
            sum(ready_at.get(r.id, b) <= a and r.start >= b for r in runs),
        )
        for a, b in zip(times, times[1:], strict=False)
    ]


def idle_within(cuts: list[Slice], workers: int, start: float, end: float) -> Counter:
    """Idle worker-seconds by cause inside [start, end)."""
    total = Counter()
    for piece in cuts:
        if piece.start < end and piece.end > start:
            share = (min(piece.end, end) - max(piece.start, start)) / (piece.end - piece.start)
            total.update({k: v * share for k, v in piece.idle(workers).items()})
    return total


@dataclass(frozen=True)
class Gap:
    start: float
    end: float
    idle: Counter  # worker-seconds by cause
    running: Counter  # worker task runs seen in the gap, by kind of work
    flow_side: Counter  # the flow process's task runs (gates, agent rounds) in the gap


def idle_gaps(record: FlowRecord, cuts: list[Slice], workers: int) -> list[Gap]:
    """Maximal periods with fewer than `workers` worker task runs running."""
    spans: list[list] = []
    for piece in cuts:
        if len(piece.running) >= workers:
            continue
        if spans and spans[-1][1] == piece.start:
            spans[-1][1] = piece.end
        else:
            spans.append([piece.start, piece.end])
    flow_side = [r for r in record.runs if r.kind in ("gate", "agent-round")]

    def seen(runs: list[Run], a: float, b: float) -> Counter:
        return Counter(_family(r.name) for r in runs if r.start < b and r.end > a)

    return [
        Gap(
            a,
            b,
            idle_within(cuts, workers, a, b),
            seen(record.workers_runs, a, b),
            seen(flow_side, a, b),
        )
        for a, b in spans
    ]


def _family(name: str) -> str:
    """A task run's name without its seed or short id: what kind of work it was."""
    return re.sub(r"-seed\d+$|-[0-9a-f]{3}$|^agent\d+-", "", name)


def schedule_groups(cuts: list[Slice]) -> tuple[list[list[Run]], float]:
    """Worker task runs split at the study's barriers (a round, a look, a known-methods call):
    where nothing ran and nothing was ready; and the seconds spent at those barriers."""
    groups: list[list[Run]] = [[]]
    seen: set[str] = set()
    serial = 0.0
    for piece in cuts:
        if not piece.running and not piece.ready:
            serial += piece.end - piece.start
            if groups[-1]:
                groups.append([])
        for run in piece.running:
            if run.id not in seen:
                seen.add(run.id)
                groups[-1].append(run)
    return [group for group in groups if group], serial


def makespan(group: list[Run], workers: int, overhead: float = 0.0, copies: int = 1) -> float:
    """Greedy list scheduling in the order Prefect started them: each run on the first free
    worker, an experiment not before its own teacher-and-ceiling preparation has finished, and
    `overhead` seconds of dispatch before each run (a group's first runs pay theirs in the
    barrier before it)."""
    free = [-overhead] * workers
    done: dict[tuple[int, str], float] = {}
    for copy in range(copies):
        for run in group:
            ready = max((done[copy, w] for w in run.waits_for if (copy, w) in done), default=0)
            slot = min(range(workers), key=free.__getitem__)
            free[slot] = max(free[slot], ready - overhead) + overhead + run.seconds
            done[copy, run.id] = free[slot]
    return max(free)


SCALE = (1, 2, 4, 8, 16, 32)


def scaling(record: FlowRecord, workers: int, per_trial_flow: float) -> None:
    """Prints the measured task runs list-scheduled on N workers, barrier group by barrier
    group, plus the time the flow process worked alone; no group goes faster than one flow
    process (and its server) handles its task runs and records its trials."""
    cuts = slices(record)
    groups, serial = schedule_groups(cuts)
    overhead = idle_within(cuts, workers, 0, record.wall)["dispatch"] / len(record.workers_runs)
    looks = [(s, e) for label, s, e in segments(record) if label.startswith("look")]
    in_looks = [any(s <= group[0].start < e for s, e in looks) for group in groups]
    experiments = [r for r in record.workers_runs if r.kind == "experiment"]
    per_trial = statistics.mean(r.seconds for r in experiments)
    work = sum(r.seconds for r in record.workers_runs)
    looked = sum(r.seconds for g, look in zip(groups, in_looks, strict=True) if look for r in g)

    def model(n: int, copies: int) -> tuple[float, float, int]:
        wall, bound = serial, 0
        for group, look in zip(groups, in_looks, strict=True):
            times = copies if look else 1
            span = makespan(group, n, overhead, times)
            floor = times * per_trial_flow * sum(r.kind == "experiment" for r in group)
            wall, bound = wall + max(span, floor), bound + (floor > span)
        return wall, (work + (copies - 1) * looked) / (n * wall), bound

    print(
        f"\n== 6. scaling model: {len(groups)} barrier groups (split where nothing ran or was "
        f"ready) list-scheduled, +{1000 * overhead:.0f} ms dispatch per task run (as measured in "
        f"the study), flow process alone "
        f"{serial:.1f} s, flow side {1000 * per_trial_flow:.0f} ms per trial; 10×: each look's "
        f"task runs ten times"
    )
    print(f"{'N':>4}{'wall s':>9}{'eff':>6}{'flow-bound':>12}   {'10× replication':<12}")
    for n in SCALE:
        (one, eff, bound), (ten, eff_ten, bound_ten) = model(n, 1), model(n, 10)
        print(
            f"{n:4d}{one:9.1f}{eff:6.2f}{bound:7d}/{len(groups):<4d}   {ten:7.1f} s  eff "
            f"{eff_ten:.2f}  flow-bound {bound_ten}/{len(groups)}"
        )
    print(
        f"measured at N={workers}: {record.wall:.1f} s. One flow process keeps up while N < mean "
        f"experiment / flow side per trial = {per_trial:.2f} s / {1000 * per_trial_flow:.0f} ms "
        f"≈ {per_trial / per_trial_flow:.0f} workers"
    )
