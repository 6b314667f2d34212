"""Calibration samples drawn from a task's calibration set, one item at a time."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

from slimkit.core.data import Batch, Batches, Inputs


def calibration_items(data: Iterable[Batch], samples: int) -> list[Inputs]:
    """Up to ``samples`` single items (batch axis kept, size 1) from calibration batches.

    Single items because every quantizer here counts samples, and batch-1 statistics are
    what the deployed batch-1 model sees.

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> items = calibration_items(Batches({"x": torch.zeros(5, 2)}, torch.zeros(5), 2), 3)
        >>> len(items), items[0]["x"].shape
        (3, torch.Size([1, 2]))
    """
    if isinstance(data, Batches):
        # A fresh view, read in its first epoch's order: iterating the task's own shuffled set
        # advances its epoch, so the items (and the int8 model) would depend on how often it was
        # iterated before in this process (a search's earlier trials), not on the model.
        data = data.with_batch_size(data.batch_size)

    def gen():
        for inputs, _ in data:
            n = next(iter(inputs.values())).shape[0]
            for i in range(n):
                yield {k: v[i : i + 1] for k, v in inputs.items()}

    return list(islice(gen(), samples))


def is_transformer(inputs: Inputs, model: object = None) -> bool:
    """Token inputs or attention modules: the cue for SmoothQuant and NNCF's transformer mode."""
    if "input_ids" in inputs:
        return True
    if model is not None and hasattr(model, "modules"):
        return any("Attention" in type(m).__name__ for m in model.modules())
    return False
