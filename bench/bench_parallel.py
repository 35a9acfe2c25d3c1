"""What one flow process sustains: parallel efficiency of a study, and the pieces that bound it.

1. A whole study (`labgap run`) against a Prefect server this benchmark starts, so every task run
   can be read back: efficiency = Σ worker task-run seconds (experiments and teacher-and-ceiling
   preparations) ÷ (workers × flow-run wall), per stage, and the largest idle gaps.
2. Orchestration overhead per experiment: one batch in-process vs through the study's executor.
3. The CLI's fixed start-up: `labgap --help`, and `labgap run` up to its flow's first lines.
4. Writer throughput: trial rows/s through `StudyRecorder`, gated in groups of 4 as in a study.
5. Prefect task-run rate: no-op task runs per second, in Prefect's process pool and its thread pool.
6. A scaling model for N workers from those pieces.

The machine is shared: numbers move between runs; alternated pairs keep the comparisons fair.
"""

import argparse
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import duckdb
import psutil
from prefect import flow, task
from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.futures import as_completed
from prefect.logging.handlers import APILogWorker
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
from prefect_timeline import (
    busy,
    idle_gaps,
    idle_within,
    read_flow_run,
    scaling,
    segments,
    slices,
)
from processes import CpuSampler, first, prefect_server, stop_group, timed_lines

from flows.executor import STREAM_GROUP, experiment_executor
from labgap.config import StudyConfig
from labgap.data.datasets import BuiltinDataset
from labgap.data.features import NumericView
from labgap.data.tasks import SplitSizes, TaskSpec, TrainingRecipe, resolve_task
from labgap.engine.w2s import TrialResult, W2SEngine, pgr
from labgap.methods.spec import PRESETS
from labgap.paths import cache_dir
from labgap.quality import validate_stage
from labgap.store.connection import Store
from labgap.store.record import StudyRecorder
from tasks.logs import quiet_completed_task_runs
from tasks.stages import quality_gate

LABGAP = str(Path(sys.executable).with_name("labgap"))
TINY = TaskSpec(  # as tests/conftest.py's tiny_binary_task: a trial well under a second
    name="tiny-binary",
    dataset=BuiltinDataset(name="breast-cancer"),
    weak_view=NumericView(columns=[0, 1]),
    strong_view=NumericView(),
    recipe=TrainingRecipe(hidden=64, epochs=10, batch_size=32),
    splits=SplitSizes(weak_train=150, w2s_train=250),
)


def run_study(args, folder: Path, server_pid: int) -> dict:
    """Part 1: the study as a subprocess; the flow run's task runs read back from the server."""
    cache = cache_dir("w2s")
    before = set(cache.glob("*.npz"))
    db = folder / f"study-{args.profile}.duckdb"
    command = [LABGAP, "run", "--profile", args.profile, "--db", str(db)]
    command += ["--workers", str(args.workers), "--seed", str(args.seed)]
    process, stream = timed_lines(command, dict(os.environ))
    sampler = CpuSampler(process.pid, server_pid)
    lines = list(stream)
    code, cpu = process.wait(), sampler.stop()
    (folder / "study.log").write_text("".join(f"{t:8.2f} {line}" for t, line in lines))
    if code != 0:
        raise SystemExit(f"the study failed (exit {code}); its log: {folder / 'study.log'}")
    record = read_flow_run("replication-study")
    (folder / "task_runs.csv").write_text(
        "kind,name,start,end\n"
        + "".join(f"{r.kind},{r.name},{r.start:.3f},{r.end:.3f}\n" for r in record.runs)
    )
    with duckdb.connect(str(db), read_only=True) as con:
        engine_seconds = con.execute("SELECT sum(wall_seconds) FROM trials").fetchone()[0]
    return dict(
        command=" ".join(["labgap", *command[1:]]),
        record=record,
        process_wall=lines[-1][0],
        to_flow=first(lines, "Beginning flow run"),
        to_plan=first(lines, "stage 1/4 plan: started"),
        trained=len(set(cache.glob("*.npz")) - before),
        engine_seconds=engine_seconds,
        cpu=cpu,
    )


def print_study(study: dict, workers: int) -> None:
    record, cpu = study["record"], study["cpu"]
    runs = record.workers_runs
    experiments = [r for r in runs if r.kind == "experiment"]
    prepares = [r for r in runs if r.kind == "prepare"]
    work = sum(r.seconds for r in runs)
    print(f"\n== 1. {study['command']}")
    print(
        f"process {study['process_wall']:.1f} s, flow run {record.wall:.1f} s; flow's first line "
        f"at {study['to_flow']:.1f} s, 'plan: started' at {study['to_plan']:.1f} s (own server)"
    )
    spent = busy(experiments, 0, record.wall)
    print(
        f"experiments: {len(experiments)} task runs, Σ {spent:.1f} s (the engine's own clock, "
        f"trials.wall_seconds: {study['engine_seconds']:.1f} s); teacher-and-ceiling preparations: "
        f"{len(prepares)} task runs, Σ {busy(prepares, 0, record.wall):.1f} s, "
        f"{study['trained']} trained, the rest served from a cache (memory or data/cache/w2s)"
    )
    print(
        f"CPU seconds: flow process {cpu['flow process']:.1f}, Prefect server "
        f"{cpu['server']:.1f}, worker processes and their sandboxes {cpu['workers']:.1f}; the "
        f"machine was busy {cpu['machine']:.1f} of {os.cpu_count() * study['process_wall']:.1f}, "
        f"{cpu['machine'] - cpu['flow process'] - cpu['server'] - cpu['workers']:.1f} of them "
        "outside this study (other load, or forks shorter than the 0.5 s sampling)"
    )
    window = max(r.end for r in runs) - min(r.start for r in runs)
    print(
        f"PARALLEL EFFICIENCY Σ worker task-run s / ({workers} × flow wall) = {work:.1f} / "
        f"({workers} × {record.wall:.1f}) = {work / (workers * record.wall):.3f} "
        f"(first to last worker task run only: {work / (workers * window):.3f})"
    )
    cuts = slices(record)
    causes = ("dispatch", "alone", "nothing ready")
    print(
        "\nidle worker-seconds by cause: dispatch = an experiment was ready (its preparation had "
        "finished) but not started;\nalone = no worker task run and nothing ready (the flow "
        "process's own work); nothing ready = the other worker had nothing to take"
    )
    print(
        f"{'stage':<48}{'wall s':>7}{'busy s':>8}{'eff':>6}" + "".join(f"{c:>14}" for c in causes)
    )
    for label, start, end in [*segments(record), ("whole flow run", 0.0, record.wall)]:
        idle, wall = idle_within(cuts, workers, start, end), end - start
        print(
            f"{label[:47]:<48}{wall:7.1f}{busy(runs, start, end):8.1f}"
            f"{busy(runs, start, end) / (workers * wall or 1):6.2f}"
            + "".join(f"{idle[c]:14.1f}" for c in causes)
        )
    print("largest idle gaps (worker-seconds lost by cause, when, stage, what ran):")
    stages = segments(record)
    for gap in sorted(idle_gaps(record, cuts, workers), key=lambda g: -sum(g.idle.values()))[:10]:
        stage = next(label for label, _, end in stages if gap.start < end)
        lost = "+".join(f"{v:.1f} {k}" for k, v in gap.idle.items() if v >= 0.05)
        ran = ", ".join(f"{n}×{k}" if n > 1 else k for k, n in gap.running.most_common(3))
        side = ", ".join(f"{n}×{k}" for k, n in gap.flow_side.most_common(3))
        print(
            f"  {gap.start:6.1f}–{gap.end:6.1f} s {stage[:28]:<28} {lost}; workers: "
            f"{ran or 'none'}" + (f"; flow: {side}" if side else "")
        )


def cli_startup(folder: Path, seed: int) -> None:
    """Part 3: as a user runs it, with the temporary Prefect server the CLI starts (a fresh
    PREFECT_HOME first, then the same one again); stopped once the plan stage has begun."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    helps = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([LABGAP, "--help"], env=env, capture_output=True, check=True)
        helps.append(time.perf_counter() - started)
    print(f"\n== 3. CLI start-up\nlabgap --help: {statistics.median(helps):.2f} s (median of 3)")
    env["PREFECT_HOME"] = str(folder / "cli-prefect-home")
    for attempt, home in enumerate(("fresh", "reused"), start=1):
        db = folder / f"startup-{attempt}.duckdb"
        command = [LABGAP, "run", "--profile", "quick", "--db", str(db), "--seed", str(seed)]
        process, stream = timed_lines(command, env)
        lines = []
        for t, line in stream:
            lines.append((t, line))
            if "stage 1/4 plan: started" in line:
                break
        os.kill(process.pid, signal.SIGINT)  # the CLI marks the study cancelled, stops its server
        process.stdout.close()
        stop_group(process, signal.SIGTERM, grace=60)
        print(
            f"labgap run, temporary Prefect server ({home} PREFECT_HOME): flow's first line "
            f"{first(lines, 'Beginning flow run'):.1f} s, 'plan: started' "
            f"{first(lines, 'stage 1/4 plan: started'):.1f} s after process start"
        )


@flow(name="bench-overhead")
def orchestration_overhead(repeats: int, seeds: int) -> dict:
    """Part 2: the same experiments in-process and through the study's executor (1 worker)."""
    quiet_completed_task_runs()
    methods = [PRESETS[name] for name in ("vanilla", "logconf", "confident", "bootstrap")]
    runs = [(method, seed) for method in methods for seed in range(seeds)]
    engine = W2SEngine(workers=1)
    direct, pooled, flow_cpu = [], [], []
    with experiment_executor(StudyConfig(workers=1)) as executor:
        expected = executor.run(TINY, runs, "bench", lambda outcomes: None)  # warm both sides
        assert [engine.run(TINY, m, s).student_acc_test for m, s in runs] == [
            o.student_acc_test for o in expected
        ], "in-process and pooled experiments differ"
        for repeat in range(repeats):
            for side in ("direct", "pooled") if repeat % 2 == 0 else ("pooled", "direct"):
                started = time.perf_counter()
                if side == "direct":
                    for method, seed in runs:
                        engine.run(TINY, method, seed)
                    direct.append(time.perf_counter() - started)
                else:
                    cpu = time.process_time()
                    executor.run(TINY, runs, "bench", lambda outcomes: None)
                    pooled.append(time.perf_counter() - started)
                    flow_cpu.append(time.process_time() - cpu)
    return dict(direct=direct, pooled=pooled, flow_cpu=flow_cpu, n=len(runs))


def trial_rows(count: int) -> list[TrialResult]:
    """Plausible trials of rt-lab, built without training (as tests/studies.py does)."""
    task_spec, rng = resolve_task("rt-lab"), random.Random(0)
    methods = list(PRESETS.values())
    rows = []
    for index in range(count):
        method, seed = methods[index % len(methods)], index // len(methods)
        weak, ceiling = 0.70 + rng.gauss(0, 0.01), 0.90 + rng.gauss(0, 0.01)
        dev, test = (weak + (ceiling - weak) * rng.uniform(0, 1) for _ in range(2))
        rows.append(
            TrialResult(
                task=task_spec.name, task_hash=task_spec.task_hash, method_hash=method.method_hash,
                method_json=method.canonical_json(), seed=seed, weak_acc_dev=weak,
                weak_acc_test=weak, ceiling_acc_dev=ceiling, ceiling_acc_test=ceiling,
                student_acc_dev=dev, student_acc_test=test, student_top_class_share=0.55,
                pgr_dev=pgr(weak, ceiling, dev), pgr_test=pgr(weak, ceiling, test),
                wall_seconds=2.0, teacher_cached=True, dataset_sha256="0" * 64,
            )
        )  # fmt: skip
    return rows


@flow(name="bench-writer")
def writer_throughput(folder: str, rows: int) -> dict:
    """Part 4: trials recorded in groups of STREAM_GROUP, each group gated, as a study does;
    the gate as the study's Prefect task, as a plain call, and no gate."""
    quiet_completed_task_runs()
    trials, results = trial_rows(rows), {}
    gates = {
        "Prefect gate task (as a study)": lambda study: partial(quality_gate, study_id=study),
        "gate called directly": lambda study: (
            lambda stage, frame: validate_stage(stage, frame, study)
        ),
        "no gate (DuckDB insert only)": lambda study: None,
    }
    for number, (label, gate) in enumerate(gates.items()):
        with Store(Path(folder) / f"writer-{number}.duckdb") as store:
            recorder = StudyRecorder(store, f"bench-{number}", "bench", gate(f"bench-{number}"))
            recorder.trials("search", "warm-up", trials[:STREAM_GROUP])
            cpu, started = time.process_time(), time.perf_counter()
            for at in range(STREAM_GROUP, rows, STREAM_GROUP):
                recorder.trials("search", f"b{at}", trials[at : at + STREAM_GROUP])
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        results[label] = (rows - STREAM_GROUP) / seconds, cpu / (rows - STREAM_GROUP)
    return results


@task(name="no-op")
def no_op(index: int) -> int:
    return index


@flow(name="bench-task-runs")
def task_run_rate(count: int, workers: int, server_pid: int) -> dict:
    """Part 5: no-op task runs submitted and collected per second through Prefect's process pool
    (a task run in a worker process, as labgap's process executor once ran them) and its thread
    pool (as the study's task runs are now), alternated; with the flow process's and the
    server's CPU per task run."""
    quiet_completed_task_runs()
    server = psutil.Process(server_pid)

    def server_cpu() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in [server, *server.children(recursive=True)])

    runners = {
        f"ProcessPoolTaskRunner({workers})": lambda: ProcessPoolTaskRunner(
            max_workers=workers, initializer=quiet_completed_task_runs
        ),
        f"ThreadPoolTaskRunner({workers})": lambda: ThreadPoolTaskRunner(max_workers=workers),
    }
    results: dict[str, list] = {}
    for label, make in runners.items():
        with make() as runner:
            for future in [runner.submit(no_op, {"index": i}) for i in range(2 * workers)]:
                future.result()  # workers started and warm
            for _ in range(3):
                cpu, served, started = time.process_time(), server_cpu(), time.perf_counter()
                futures = [runner.submit(no_op, {"index": i}) for i in range(count)]
                for future in as_completed(futures):
                    future.result()
                seconds = time.perf_counter() - started
                flow_cpu, server_used = time.process_time() - cpu, server_cpu() - served
                results.setdefault(label, []).append(
                    (count / seconds, flow_cpu / count, server_used / count)
                )
    return {
        k: [statistics.median(column) for column in zip(*v, strict=True)]
        for k, v in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", default="default", help="the study's profile (quick: faster)")
    parser.add_argument("--seed", type=int, default=9001, help="the study's seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-study", action="store_true", help="parts 2-5 only")
    parser.add_argument("--study-only", action="store_true", help="part 1 only")
    parser.add_argument("--repeats", type=int, default=6, help="part 2's alternated pairs")
    args = parser.parse_args()
    logging.getLogger("prefect.task_runner.processpool").setLevel(logging.ERROR)  # 1-worker pool
    folder = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    home = folder / "prefect-home"
    print(f"scratch {folder}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    with prefect_server(home) as (url, server_pid):
        # Every thread and worker process, not only this context, must talk to this server.
        os.environ.update(PREFECT_API_URL=url, PREFECT_HOME=str(home))
        refresh_global_settings_context()
        study = None if args.no_study else run_study(args, folder, server_pid)
        if study:
            print_study(study, args.workers)
        if args.study_only:
            return
        timings = orchestration_overhead(args.repeats, seeds=5)
        writer = writer_throughput(str(folder), rows=404)
        rates = task_run_rate(100, args.workers, server_pid)
        APILogWorker.drain_all(timeout=30)  # while the server is up, not at exit
        EventsWorker.drain_all(timeout=30)
    del os.environ["PREFECT_API_URL"]
    refresh_global_settings_context()
    n = timings["n"]
    pairs = [p - d for p, d in zip(timings["pooled"], timings["direct"], strict=True)]
    flow_per_run = statistics.median(timings["flow_cpu"]) / n
    print(
        f"\n== 2. orchestration overhead: {n} tiny experiments (preparations done once before), "
        f"{args.repeats} alternated pairs\nin-process {statistics.median(timings['direct']):.2f} s,"
        f" through the study's PrefectExecutor (1 worker process) "
        f"{statistics.median(timings['pooled']):.2f} s: {1000 * statistics.median(pairs) / n:.0f} "
        f"ms per experiment (pairs: {', '.join(f'{1000 * d / n:.0f}' for d in pairs)}); "
        f"flow-process CPU {1000 * flow_per_run:.1f} ms per task run"
    )
    cli_startup(folder, args.seed + 1)
    print("\n== 4. writer: trial rows recorded in groups of 4 (rows/s, flow CPU ms per row)")
    for label, (rate, cpu) in writer.items():
        print(f"  {label:<34}{rate:8.0f} rows/s  {1000 * cpu:6.1f} ms")
    print("\n== 5. no-op task runs (runs/s; flow-process and server CPU ms per run; median of 3)")
    for label, (rate, flow_cpu, server_cpu) in rates.items():
        print(
            f"  {label:<36}{rate:8.1f} /s  {1000 * flow_cpu:6.1f} ms  {1000 * server_cpu:6.1f} ms"
        )
    if study:
        record = study["record"]
        experiments = sum(r.kind == "experiment" for r in record.workers_runs)
        runs_per_trial = len(record.workers_runs) / experiments
        server_per_run = rates[f"ThreadPoolTaskRunner({args.workers})"][2]
        row = writer["Prefect gate task (as a study)"][1]
        per_trial_flow = max(  # the flow process and the server: one process each
            runs_per_trial * flow_per_run + row,
            (runs_per_trial + 1 / STREAM_GROUP) * server_per_run,  # a gate task run per group
        )
        scaling(record, args.workers, per_trial_flow)


if __name__ == "__main__":
    main()
