"""A method program's trial against the same method as an in-process `MethodSpec` trial.

The program is `examples/methods/vanilla_with_params.py` at its defaults (vanilla weak-to-strong
training through `w2s_kit`, the student the engine trains in-process); the `MethodSpec` is the
`vanilla` preset. Both run on rt-lab with the teacher and ceiling cached, alternating, so the
difference is what the sandbox costs per trial: the inputs written and read as files, the fork of
the warm server, output validation. The sandbox's start-up (its server importing numpy, scipy,
scikit-learn and torch) is paid once per worker process and printed apart. Also prints whether the
two give the same accuracies. The machine is shared and noisy: medians and their ratio.
"""

import argparse
import statistics
import time
from pathlib import Path

from labgap.data.tasks import resolve_task
from labgap.engine.w2s import TrialLimits, W2SEngine
from labgap.methods.spec import PRESETS
from labgap.programs.isolation import detect_isolation
from labgap.programs.method import load_program

PROGRAM = Path(__file__).parents[1] / "examples" / "methods" / "vanilla_with_params.py"


def timed(run):
    started = time.perf_counter()
    result = run()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--task", default="rt-lab")
    args = parser.parse_args()
    task, program, limits = resolve_task(args.task), load_program(PROGRAM), TrialLimits()
    engine = W2SEngine()
    print(f"sandbox isolation: {detect_isolation().level}")
    for seed in range(args.seeds):
        engine.teacher_and_ceiling(task, seed)  # cached before any timing
    startup, _ = timed(lambda: engine.sandbox(limits.sandbox).warm())
    print(f"sandbox start-up (once per worker process): {startup:.2f} s")
    spec_seconds, program_seconds, same = [], [], 0
    for seed in range(args.seeds):
        spent, spec = timed(lambda s=seed: engine.run(task, PRESETS["vanilla"], s))
        spec_seconds.append(spent)
        spent, prog = timed(lambda s=seed: engine.run(task, program, s, limits))
        program_seconds.append(spent)
        same += (spec.student_acc_dev, spec.student_acc_test) == (
            prog.student_acc_dev,
            prog.student_acc_test,
        )
    spec_median = statistics.median(spec_seconds)
    program_median = statistics.median(program_seconds)
    overhead = program_median - spec_median
    print(f"in-process MethodSpec trial (vanilla): median {spec_median:.3f} s")
    print(f"sandboxed program trial (same method):  median {program_median:.3f} s")
    print(
        f"sandbox overhead per trial: {overhead:+.3f} s ({overhead / spec_median:+.0%} of the "
        f"in-process trial; target: under max(0.5 s, 30%))"
    )
    print(f"identical accuracies (dev and test) on {same} of {args.seeds} seeds")


if __name__ == "__main__":
    main()
