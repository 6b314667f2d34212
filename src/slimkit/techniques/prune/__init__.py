"""Pruning: structured (channels, neurons, attention heads) and unstructured (magnitude, 2:4).

* :func:`prune_model` prunes a copy of a task's model and recovers it (fine-tuning or
  distillation through the training engine); :class:`PruneConfig` says how.
* :func:`prune_structured` removes channels in place (Torch-Pruning's dependency graph keeps
  residual additions, concatenations, depthwise/grouped convolutions and BatchNorm
  consistent; BERT-family encoders lose heads and FFN neurons with their config updated).
* :func:`save_pruned` / :func:`load_pruned` store a pruned model without pickle (sparse
  weights compressed as values + bitmask).

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
    ...                           torch.nn.Conv2d(16, 8, 3))
    >>> r = prune_structured(net, {"input": torch.randn(1, 3, 8, 8)}, PruneConfig(ratio=0.5))
    >>> net[0].out_channels, net[1].num_features
    (8, 8)
"""

from slimkit.techniques.prune._apply import PruneResult, prune_model
from slimkit.techniques.prune._config import PruneConfig
from slimkit.techniques.prune._errors import PruneError
from slimkit.techniques.prune._sensitivity import Sensitivity, analyse, choose_ratios
from slimkit.techniques.prune._step import TECHNIQUE
from slimkit.techniques.prune._storage import load_pruned, read_state, save_pruned
from slimkit.techniques.prune._structured import StructuredResult, prune_structured
from slimkit.techniques.prune._unstructured import cubic_sparsity, magnitude_masks, nm_mask, sparsity_table

__all__ = [
    "TECHNIQUE",
    "PruneConfig",
    "PruneError",
    "PruneResult",
    "Sensitivity",
    "StructuredResult",
    "analyse",
    "choose_ratios",
    "cubic_sparsity",
    "load_pruned",
    "magnitude_masks",
    "nm_mask",
    "prune_model",
    "prune_structured",
    "read_state",
    "save_pruned",
    "sparsity_table",
]
