"""Vanilla weak-to-strong training written in plain torch (no w2s_kit): a fresh one-hidden-layer
MLP trained on the weak teacher's soft labels with the task's recipe (Burns et al. 2023, "Weak-to-
Strong Generalization"). The test checks that a program reproduces the engine's in-process vanilla
student within seed noise; its random draws differ from the engine's (numpy-seeded), so the
numbers agree only statistically."""

import numpy as np
import torch


def fit_predict(data):
    recipe = data.recipe
    rng = np.random.default_rng([data.seed, 2024])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x = torch.from_numpy(np.ascontiguousarray(data.train_features, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(data.teacher_probs, dtype=np.float32))
    sizes = (
        [x.shape[1], recipe.hidden, data.n_classes]
        if recipe.hidden
        else [x.shape[1], data.n_classes]
    )
    layers = []
    for fan_in, fan_out in zip(sizes, sizes[1:], strict=False):
        layer = torch.nn.Linear(fan_in, fan_out)
        bound = fan_in**-0.5
        with torch.no_grad():
            layer.weight.copy_(
                torch.empty_like(layer.weight).uniform_(-bound, bound, generator=generator)
            )
            layer.bias.copy_(
                torch.empty_like(layer.bias).uniform_(-bound, bound, generator=generator)
            )
        layers.append(layer)
    params = [p for layer in layers for p in layer.parameters()]

    def forward(inputs, training):
        hidden = inputs
        for layer in layers[:-1]:
            hidden = torch.nn.functional.gelu(layer(hidden))
        if training and recipe.dropout > 0:
            keep = torch.rand(hidden.shape, generator=generator) >= recipe.dropout
            hidden = hidden * keep / (1.0 - recipe.dropout)
        return layers[-1](hidden)

    optimiser = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    for _ in range(recipe.epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), recipe.batch_size):
            rows = order[start : start + recipe.batch_size]
            log_probs = torch.log_softmax(forward(x[rows], training=True), dim=1)
            loss = -(y[rows] * log_probs).sum(dim=1).mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    with torch.inference_mode():
        evaluation = torch.from_numpy(np.ascontiguousarray(data.eval_features, dtype=np.float32))
        return torch.softmax(forward(evaluation, training=False), dim=1).numpy()
