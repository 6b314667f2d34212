"""Unstructured pruning: zero the smallest weights (layer-wise or global), or keep 2 of every 4.

Weights are zeroed in place (no masks or reparametrisation are left in the model), so the
result exports like any model; :func:`hold_masks` keeps them zero while fine-tuning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from slimkit.kernels.hooks import Hooks

_PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)
Prunable = nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear | nn.ConvTranspose2d


def prunable_weights(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, Prunable]:
    """Conv and linear layers whose weights may be zeroed (``skip`` names are left dense)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _PRUNABLE) and n not in skip}


def cubic_sparsity(step: int, total: int, final: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: fast at first, flat near the end.

    Example:
        >>> [round(cubic_sparsity(t, 4, 0.8), 3) for t in range(5)]
        [0.0, 0.463, 0.7, 0.788, 0.8]
    """
    frac = min(max(step / max(total, 1), 0.0), 1.0)
    return final + (initial - final) * (1.0 - frac) ** 3


def _score(w: torch.Tensor, criterion: str) -> torch.Tensor:
    if criterion == "taylor" and w.grad is not None:
        return (w.detach() * w.grad.detach()).abs()
    return w.detach().abs()


def nm_mask(w: torch.Tensor, n: int = 2, m: int = 4, criterion: str = "l1") -> torch.Tensor:
    """Keep the ``n`` largest of every ``m`` consecutive weights along the input axis.

    Example:
        >>> nm_mask(torch.tensor([[1.0, -4.0, 3.0, 2.0]])).tolist()
        [[False, True, True, False]]
    """
    flat = w.detach().reshape(w.shape[0], -1)
    cols = flat.shape[1]
    if cols % m:
        return torch.ones_like(w, dtype=torch.bool)  # cannot tile: leave the layer dense
    score = _score(w, criterion).reshape(-1, m)
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep.scatter_(1, score.topk(n, dim=1).indices, True)
    return keep.reshape(w.shape)


def magnitude_masks(model: nn.Module, sparsity: float, *, scope: str = "uniform", pattern: str = "none",
                    criterion: str = "l1", per_layer: dict[str, float] | None = None,
                    skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """Keep-masks for every prunable weight. ``scope='global'`` ranks all weights together."""
    layers = prunable_weights(model, skip)
    per_layer = per_layer or {}
    if pattern == "2:4":
        return {n: nm_mask(m.weight, 2, 4, criterion) for n, m in layers.items()}
    masks = {}
    if scope == "global":
        scores = {n: _score(m.weight, criterion) for n, m in layers.items() if n not in per_layer}
        if scores:
            flat = torch.cat([s.flatten() for s in scores.values()])
            k = int(round(sparsity * flat.numel()))
            threshold = flat.kthvalue(k).values if k else flat.min() - 1
            masks = {n: s > threshold for n, s in scores.items()}
    for n, m in layers.items():
        if n in masks:
            continue
        s = _score(m.weight, criterion)
        k = int(round(per_layer.get(n, sparsity) * s.numel()))
        keep = torch.ones_like(s, dtype=torch.bool)
        if k:
            keep.view(-1)[s.flatten().topk(k, largest=False).indices] = False
        masks[n] = keep
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    layers = prunable_weights(model)  # masks name prunable layers (magnitude_masks)
    with torch.no_grad():
        for name, keep in masks.items():
            layers[name].weight.mul_(keep.to(layers[name].weight.dtype))


@contextmanager
def hold_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> Iterator[None]:
    """Re-apply masks before every forward while training, so the optimiser's momentum
    cannot revive a pruned weight; the hooks are removed afterwards."""
    layers = prunable_weights(model)  # masks name prunable layers (magnitude_masks)
    hooks = Hooks()
    for name, keep in masks.items():
        def pre(_mod: nn.Module, _args: object, keep: torch.Tensor = keep, layer: Prunable = layers[name]) -> None:
            with torch.no_grad():
                layer.weight.mul_(keep.to(layer.weight.dtype))
        hooks.pre(layers[name], pre)
    try:
        with hooks:
            yield
    finally:
        apply_masks(model, masks)


def sparsity_table(model: nn.Module) -> dict[str, float]:
    """Fraction of exactly-zero weights per conv/linear layer.

    Example:
        >>> lin = torch.nn.Linear(2, 2); _ = lin.weight.data.copy_(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))
        >>> sparsity_table(lin)
        {'<model>': 0.75}
    """
    return {(n or "<model>"): round(float((m.weight == 0).float().mean()), 4)
            for n, m in prunable_weights(model).items()}


def overall_sparsity(model: nn.Module) -> float:
    layers = prunable_weights(model).values()
    total = sum(m.weight.numel() for m in layers)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    return zeros / max(total, 1)
