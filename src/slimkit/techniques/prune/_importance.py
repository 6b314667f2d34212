"""Importance criteria: which channels matter least (Torch-Pruning's scorers, plus a reducer
for groups of rows used by transformer heads and FFN neurons)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from slimkit.core.data import Batch
from slimkit.core.task import run_model
from slimkit.errors import UsageError


def tp_importance(criterion: str):  # noqa: ANN201 - a torch_pruning Importance
    """The Torch-Pruning scorer for ``criterion`` (l1, l2, taylor, bn_scale)."""
    import torch_pruning as tp

    if criterion == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if criterion == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if criterion == "taylor":
        return _taylor()
    if criterion == "bn_scale":
        return tp.importance.BNScaleImportance()
    raise UsageError(f"unknown pruning criterion '{criterion}'", hint="use l1, l2, taylor or bn_scale")


def _taylor():  # noqa: ANN202
    """First-order Taylor |w * dL/dw| scored by Torch-Pruning's magnitude scorer (p=1) on the
    saliency tensors: it reuses the magnitude scorer's handling of grouped convolutions, which
    GroupTaylorImportance gets wrong for grouped convs after a concatenation."""
    import torch_pruning as tp

    class GroupTaylor(tp.importance.GroupMagnitudeImportance):
        def __call__(self, group):  # noqa: ANN001, ANN204
            swapped = []
            for dep, _ in group:
                layer = dep.target.module
                for name in ("weight", "bias"):
                    p = getattr(layer, name, None)
                    if isinstance(p, torch.Tensor) and p.grad is not None and p.grad.shape == p.shape:
                        swapped.append((p, p.data))
                        p.data = (p.data * p.grad).abs()
            try:
                return super().__call__(group)
            finally:
                for p, data in swapped:
                    p.data = data

    return GroupTaylor(p=1)


def accumulate_gradients(model: nn.Module, data: Iterable[Batch], loss_fn, batches: int) -> None:  # noqa: ANN001
    """Sum gradients of the task loss over a few batches (first-order Taylor needs w * dL/dw)."""
    model.zero_grad(set_to_none=True)
    model.eval()  # BN statistics must not move while we only score channels
    for i, (inputs, targets) in enumerate(data):
        if i >= batches:
            break
        loss_fn(run_model(model, inputs), targets).backward()


def row_scores(weights: list[tuple[torch.Tensor, int]], criterion: str) -> torch.Tensor:
    """Score output units from the weights they touch: ``(tensor, axis of the unit)`` pairs.

    ``taylor`` reads ``tensor.grad`` (|w * g|); l1/l2/bn_scale fall back to magnitudes.
    Each tensor's score is normalised by its mean so no single matrix dominates.
    """
    total = None
    for w, axis in weights:
        moved = w.detach().movedim(axis, 0).flatten(1)
        if criterion == "taylor" and w.grad is not None:
            score = (moved * w.grad.detach().movedim(axis, 0).flatten(1)).abs().sum(1)
        elif criterion == "l1":
            score = moved.abs().sum(1)
        else:
            score = moved.pow(2).sum(1)
        score = score / score.mean().clamp(min=1e-12)
        total = score if total is None else total + score
    assert total is not None
    return total
