"""Regularization that wraps any model or loss: L1/L2 penalties, dropout rate, label smoothing,
and torchvision v2 transforms as a seeded augmentation hook."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Inputs
from slimkit.errors import UsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Augment = Callable[[Inputs, torch.Generator], Inputs]


def penalty(model: nn.Module, l1: float = 0.0, l2: float = 0.0) -> torch.Tensor | None:
    """``l1 * sum|w| + l2 * sum w^2`` over trainable weights (biases and norms excluded).

    Unlike AdamW's decoupled weight decay this is part of the loss, so it also shapes the
    gradient direction (L1 drives weights to exactly zero, useful before pruning).

    Example:
        >>> net = torch.nn.Linear(2, 1, bias=False); _ = net.weight.data.fill_(2.0)
        >>> float(penalty(net, l1=1.0, l2=0.5).detach())
        8.0
    """
    if not l1 and not l2:
        return None
    total: torch.Tensor | None = None
    for p in model.parameters():
        if p.requires_grad and p.dim() > 1:
            term = l1 * p.abs().sum() if l1 else l2 * p.pow(2).sum()
            if l1 and l2:
                term = term + l2 * p.pow(2).sum()
            total = term if total is None else total + term
    return total


def set_dropout(model: nn.Module, rate: float | None) -> int:
    """Set every dropout module's rate to ``rate`` (None leaves them); returns how many changed."""
    if rate is None:
        return 0
    if not 0.0 <= rate < 1.0:
        raise UsageError(f"dropout rate must be in [0, 1), got {rate}")
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.p = rate
            count += 1
    return count


def smooth_labels(loss_fn: LossFn, eps: float) -> LossFn:
    """``(1 - eps) * loss + eps * cross-entropy against the uniform distribution``.

    With ``loss_fn = F.cross_entropy`` this is exactly cross-entropy with label smoothing
    ``eps``; with any other classification loss it adds the same pull towards uniform.

    Example:
        >>> o, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
        >>> a = smooth_labels(F.cross_entropy, 0.1)(o, t)
        >>> torch.allclose(a, F.cross_entropy(o, t, label_smoothing=0.1))
        True
    """
    if not eps:
        return loss_fn
    if not 0.0 < eps < 1.0:
        raise UsageError(f"label smoothing must be in [0, 1), got {eps}")

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.dim() != 2 or targets.is_floating_point():
            raise UsageError("label smoothing needs class logits (N, C) and integer class targets",
                             hint="set label_smoothing=0 for this task")
        uniform = -F.log_softmax(outputs, dim=1).mean(dim=1).mean()
        return (1.0 - eps) * loss_fn(outputs, targets) + eps * uniform

    return loss


def vision_augment(transform: Callable[[torch.Tensor], torch.Tensor], key: str | None = None,
                   per_sample: bool = True) -> Augment:
    """Turn a torchvision v2 transform into the engine's seeded ``augment`` hook.

    torchvision draws from the global RNG; here each batch draws from a fork seeded by the
    engine's generator, so augmentation is reproducible and resumable without disturbing
    dropout's random stream. ``per_sample`` draws fresh parameters per image.

    Example:
        >>> from torchvision.transforms import v2
        >>> aug = vision_augment(v2.RandomHorizontalFlip(p=0.5))
        >>> x = {"x": torch.arange(8.0).view(2, 1, 2, 2)}
        >>> a = aug(x, torch.Generator().manual_seed(0)); b = aug(x, torch.Generator().manual_seed(0))
        >>> torch.equal(a["x"], b["x"])
        True
    """

    def augment(inputs: Inputs, gen: torch.Generator) -> Inputs:
        name = key or next(iter(inputs))
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            x = inputs[name]
            out = torch.stack([transform(img) for img in x]) if per_sample else transform(x)
        return {**inputs, name: out}

    return augment
