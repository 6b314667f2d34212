"""Graph optimization that never changes what a model computes.

* :func:`fuse_torch` folds BatchNorm into the preceding Conv/ConvTranspose/Linear of a
  torch model (on a copy that keeps the model's own class) and proves the result matches.
* :func:`optimize_onnx` saves ONNX Runtime's own graph optimizations as an ONNX file and
  checks it against the original.

Example:
    >>> import json, torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    >>> fused, result = fuse_torch(net, {"input": torch.randn(2, 4)}, FuseConfig())
    >>> len(result.fused), json.loads(json.dumps(result.config.to_dict()))["type"]
    (1, 'fuse')
"""

from slimkit.techniques.fuse._config import FuseConfig
from slimkit.techniques.fuse._onnx import OnnxOptResult, optimize_onnx
from slimkit.techniques.fuse._pairs import Rejected
from slimkit.techniques.fuse._step import TECHNIQUE
from slimkit.techniques.fuse._torch import FusedPair, FuseResult, fuse_torch

__all__ = [
    "TECHNIQUE",
    "FuseConfig",
    "FuseResult",
    "FusedPair",
    "OnnxOptResult",
    "Rejected",
    "fuse_torch",
    "optimize_onnx",
]

