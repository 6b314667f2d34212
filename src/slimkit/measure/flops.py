"""Parameter and multiply-accumulate counts of a torch model at batch 1."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimkit.core.data import Inputs
from slimkit.core.task import run_model


def count_params(model: nn.Module) -> int:
    """Number of parameters (weights zeroed by unstructured pruning still count).

    Example:
        >>> count_params(torch.nn.Linear(4, 2))
        10
    """
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, example_inputs: Inputs) -> int:
    """Multiply-accumulates of one forward pass on ``example_inputs`` (matmuls and convolutions).

    Example:
        >>> count_macs(torch.nn.Linear(4, 2), {"input": torch.zeros(1, 4)})
        8
    """
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        run_model(model.eval(), example_inputs)
    return int(counter.get_total_flops() // 2)
