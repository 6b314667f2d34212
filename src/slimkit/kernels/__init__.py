"""Model kernels shared by the techniques, written once below them (techniques never import each other).

* :mod:`.batchnorm`: folding an eval-mode BatchNorm into the Conv/Linear before it, the checks
  that a module computes what its stock class does, and pairing by running example inputs;
* :mod:`.hooks`: forward hooks that are always removed, an output recorder by module name and a
  call-order tracer;
* :mod:`.teacher`: a student trained next to a frozen teacher, with named hidden outputs of both
  recorded for feature losses.

Each technique keeps its own decisions (which pairs, which losses); the kernels only compute.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 2))
    >>> with Recorder(net, ["0"]) as rec:
    ...     _ = net(torch.zeros(4, 3))
    >>> tuple(rec.outputs["0"].shape)
    (4, 2)
"""

from slimkit.kernels.batchnorm import fold_batchnorm, fold_by_run, is_batchnorm, is_foldable_layer, why_not_foldable
from slimkit.kernels.hooks import Call, Hooks, Recorder, trace_calls
from slimkit.kernels.teacher import TeacherStudent

__all__ = [
    "Call",
    "Hooks",
    "Recorder",
    "TeacherStudent",
    "fold_batchnorm",
    "fold_by_run",
    "is_batchnorm",
    "is_foldable_layer",
    "trace_calls",
    "why_not_foldable",
]
