"""The student's training losses: plain soft cross-entropy and the auxiliary-confidence variants
(logconf, bootstrap, product), with the prior-matching hardening that keeps multiclass logconf from
collapsing onto one class."""


def balanced_hardening(probs, prior, iterations: int = 3):
    """Hard labels from the student's predictions whose class mix matches the prior.

    A plain argmax lets one class swallow the batch (the collapse seen with multiclass logconf);
    Sinkhorn rescaling of the columns toward the prior before the argmax keeps every class present,
    and in the binary case it reduces to Burns et al.'s prior-quantile threshold.
    """
    import torch

    scaled = probs.clamp_min(1e-8)
    for _ in range(iterations):
        scaled = scaled * (prior / scaled.mean(dim=0).clamp_min(1e-8))
        scaled = scaled / scaled.sum(dim=1, keepdim=True)
    return torch.nn.functional.one_hot(scaled.argmax(dim=1), probs.shape[1]).to(probs.dtype)


def student_loss(kind: str, log_probs, target, aux: float, prior):
    import torch

    def soft_xent(dist):
        return -(dist * log_probs).sum(dim=1).mean()

    if kind == "xent" or aux == 0.0:
        return soft_xent(target)
    own = log_probs.detach().exp()
    if kind == "logconf":
        return (1 - aux) * soft_xent(target) + aux * soft_xent(balanced_hardening(own, prior))
    if kind == "bootstrap":
        return soft_xent((1 - aux) * target + aux * own)
    product = target.clamp_min(1e-8) * own.clamp_min(1e-8) ** aux
    return soft_xent(product / product.sum(dim=1, keepdim=True).clamp_min(torch.finfo().tiny))
