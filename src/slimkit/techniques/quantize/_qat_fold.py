"""Conv-BatchNorm folding before per-tensor quantization-aware training.

Per tensor, the scheme the runtime applies to the deployed, BatchNorm-folded weight is
simulated on that same weight: a per-tensor grid on the unfolded weight would not survive the
runtime's folding, which rescales every output channel.
"""

from __future__ import annotations

from torch import nn

from slimkit.core.data import Inputs
from slimkit.kernels.batchnorm import fold_by_run

# The runtimes fold BatchNorm into a convolution; these are the layers whose grid must see it.
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fold_batchnorms(model: nn.Module, example_inputs: Inputs) -> list[str]:
    """Fold (in place, eval statistics) each BatchNorm whose input is a Conv's output; returns their names.

    The pairs are found by running ``example_inputs`` (a BatchNorm fed the very tensor a Conv
    returned, each called once), the folded BatchNorms become ``nn.Identity``, and the folded
    model must match the original on ``example_inputs``, else nothing is folded
    (:func:`slimkit.kernels.batchnorm.fold_by_run`, the arithmetic the fuse technique uses too).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
        >>> fold_batchnorms(net, {"input": torch.randn(1, 1, 5, 5)}), type(net[1]).__name__
        (['1'], 'Identity')
    """
    return fold_by_run(model, example_inputs, types=_CONVS)
