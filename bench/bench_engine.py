"""Engine benchmark on rt-lab: a cold experiment vs a further method on a cached (task, seed).

Prints seconds per full experiment (teacher + ceiling + student) and per student training with the
teacher and ceiling cached (in memory and from disk), their ratio, and peak memory. The machine is
shared and noisy: read the ratios, which are measured within one run.
"""

import argparse
import resource
import statistics
import time

from labgap.data.tasks import resolve_task
from labgap.engine.w2s import W2SEngine
from labgap.methods.spec import PRESETS
from labgap.paths import cache_dir


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--task", default="rt-lab")
    args = parser.parse_args()
    task = resolve_task(args.task)
    W2SEngine(disk_cache=False).data(task, 0)  # load data and embeddings once, outside the timings

    cold, cached_student, student_only = [], [], {}
    for seed in range(args.seeds):
        engine = W2SEngine(disk_cache=False)
        engine.data(task, seed)
        cold.append(timed(lambda e=engine, s=seed: e.run(task, PRESETS["vanilla"], s)))
        for name in ("vanilla", "logconf", "confident"):
            seconds = timed(lambda e=engine, s=seed, n=name: e.run(task, PRESETS[n], s))
            student_only.setdefault(name, []).append(seconds)
        cached_student.extend(student_only["vanilla"][-1:])
        assert engine.training_counts["weak"] == 1 and engine.training_counts["ceiling"] == 1

    disk_seed = 10_000
    probe = W2SEngine()
    key = probe.cache_key(task, probe.data(task, disk_seed).dataset, disk_seed)
    (cache_dir("w2s") / f"{key}.npz").unlink(missing_ok=True)
    probe.run(task, PRESETS["vanilla"], disk_seed)
    warm_engine = W2SEngine()
    warm_engine.data(task, disk_seed)
    disk_warm = timed(lambda: warm_engine.run(task, PRESETS["vanilla"], disk_seed))
    assert warm_engine.training_counts == {"student": 1}

    mean = statistics.mean
    print(f"task {task.name}, {args.seeds} seeds")
    print(f"full experiment, cold (weak + ceiling + student): {mean(cold):.2f} s")
    for name, values in student_only.items():
        print(f"further method {name:<10} on cached teacher/ceiling: {mean(values):.2f} s")
    print(f"vanilla from the on-disk cache in a fresh engine: {disk_warm:.2f} s")
    print(f"ratio cached vanilla / cold experiment: {mean(cached_student) / mean(cold):.2f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
