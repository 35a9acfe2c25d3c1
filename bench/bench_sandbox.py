"""Sandbox benchmark: zygote start-up, and the per-trial overhead of running a program in it.

The overhead is measured with a trivial program (uniform probabilities) on inputs the size of the
real lab task (train 4000x384, eval 8000x384 float32, 2 classes): fork, file exchange, validation.
The machine is shared and noisy: medians over several runs.
"""

import argparse
import statistics
import time

import numpy as np

from labgap.programs.isolation import detect_isolation
from labgap.programs.sandbox import ProgramInputs, Sandbox

TRIVIAL = """
import numpy as np
def fit_predict(data):
    return np.full((len(data.eval_features), data.n_classes), 1.0 / data.n_classes)
"""

ONE_TORCH_STEP = """
import torch
def fit_predict(data):
    model = torch.nn.Linear(data.train_features.shape[1], data.n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=data.recipe.lr)
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(data.train_features)),
                                             torch.from_numpy(data.teacher_probs))
    loss.backward()
    optimizer.step()
    return torch.softmax(model(torch.from_numpy(data.eval_features)), 1).detach()
"""


def lab_sized_inputs() -> ProgramInputs:
    rng = np.random.default_rng(0)
    return ProgramInputs(
        train_features=rng.normal(size=(4000, 384)).astype(np.float32),
        teacher_probs=rng.dirichlet([1.0, 1.0], size=4000).astype(np.float32),
        eval_features=rng.normal(size=(8000, 384)).astype(np.float32),
        n_classes=2,
        seed=0,
        recipe={"epochs": 20, "lr": 1e-3, "weight_decay": 0.0, "hidden": 256, "dropout": 0.1,
                "batch_size": 64},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    isolation = detect_isolation()
    print(f"isolation: {isolation.level} - {isolation.detail}")
    inputs = lab_sized_inputs()
    with Sandbox(isolation=isolation) as sandbox:
        started = time.perf_counter()
        sandbox.warm()
        print(f"zygote start-up (Sandbox.warm): {time.perf_counter() - started:.2f} s")
        for label, source in [
            ("trivial program", TRIVIAL),
            ("one torch Adam step", ONE_TORCH_STEP),
        ]:
            host, inside = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                run = sandbox.run(source, inputs)
                host.append(time.perf_counter() - started)
                inside.append(run.wall_seconds)
                assert run.error is None, run.error
            print(
                f"{label}, lab-sized inputs: median of {args.runs} runs: "
                f"{statistics.median(host) * 1000:.0f} ms per run as the host sees it "
                f"(fork + file exchange + validation), "
                f"{statistics.median(inside) * 1000:.0f} ms of it in the forked child"
            )


if __name__ == "__main__":
    main()
