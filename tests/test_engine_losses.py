import torch

from labgap.engine.losses import balanced_hardening


def test_balanced_hardening_keeps_every_class_where_argmax_collapses():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=generator) * 0.1
    logits[:, 0] += 1.0
    probs = torch.softmax(logits, dim=1)
    assert probs.argmax(dim=1).unique().tolist() == [0]
    prior = torch.full((5,), 0.2)
    counts = balanced_hardening(probs, prior).sum(dim=0)
    assert (counts > 20).all(), counts
