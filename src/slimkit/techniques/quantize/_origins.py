"""Which torch module each layer of an exported graph came from, found by weight value.

Exporters and runtimes rename what they fold: the dynamo ONNX exporter names a Linear's
transposed weight "val_52", OpenVINO names a convolution with a BatchNorm folded into it
"Multiply_2980" and ONNX Runtime's pre-processing folds BatchNorms too. The weights themselves
survive (transposed, split into row blocks, or scaled per output channel by the folded
BatchNorm), so matching them by value names every layer after the module a user knows: what the
sensitivity table shows and what ``exclude`` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn


def in_module(name: str, module: str) -> bool:
    """``name`` is the module ``module`` or lies inside it (a submodule or one of its parameters): how
    ``exclude`` names a layer or a whole block.

    Example:
        >>> in_module("encoder.layer.0.query", "encoder.layer.0"), in_module("encoder.layer.01", "encoder.layer.0")
        (True, False)
    """
    return name == module or name.startswith(f"{module}.")


def is_block_of(array: np.ndarray, weight: np.ndarray) -> bool:
    """``array`` is ``weight``, or a block of its rows (an exporter's slice of a packed projection),
    as stored or transposed; or, for a convolution, ``weight`` with each output channel scaled (a
    BatchNorm folded into it by ONNX Runtime's pre-processing).

    Example:
        >>> w = np.arange(12.0).reshape(6, 2)
        >>> is_block_of(w[2:4].T, w), is_block_of(w[1:3], w), is_block_of(w, w[:3])
        (True, False, False)
        >>> conv = np.arange(1.0, 9.0).reshape(2, 1, 2, 2)
        >>> is_block_of(conv * np.array([-0.5, 2.0]).reshape(2, 1, 1, 1), conv)
        True
    """
    if array.ndim > 2 and array.shape != weight.shape and array.size == weight.size:
        array = array.reshape(weight.shape)  # OpenVINO's grouped-convolution kernel: [groups, out/g, ...]
    if array.ndim > 2 and array.shape == weight.shape:
        a, w = array.reshape(len(array), -1), weight.reshape(len(weight), -1)
        rows, peak = np.arange(len(w)), np.abs(w).argmax(axis=1)
        safe = np.where(w[rows, peak] == 0, 1.0, w[rows, peak])
        factor = np.where(w[rows, peak] == 0, 0.0, a[rows, peak] / safe)
        return bool(np.allclose(a, factor[:, None] * w, rtol=1e-4, atol=1e-6 * float(np.abs(a).max() or 1.0)))
    for a in (array, array.T) if array.ndim == 2 else (array,):
        if a.ndim != weight.ndim or a.shape[1:] != weight.shape[1:] or weight.shape[0] % a.shape[0]:
            continue
        n = a.shape[0]
        if any(np.array_equal(a, weight[i:i + n]) for i in range(0, weight.shape[0], n)):
            return True
    return False


def module_weights(model: nn.Module) -> list[tuple[str, np.ndarray]]:
    """(module name, weight) of every module that owns a weight matrix or kernel (Linear, Conv, Embedding).

    Example:
        >>> [name for name, _ in module_weights(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Conv1d(3, 1, 1)))]
        ['0', '2']
    """
    return [(name, m.weight.detach().float().cpu().numpy()) for name, m in model.named_modules()
            if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() >= 2]


def name_layers(layer_weights: Mapping[str, np.ndarray], modules: Sequence[tuple[str, np.ndarray]]) -> dict[str, str]:
    """``{layer: module}`` for every layer whose weight is one of ``modules``' weights (or a block of one).

    Example:
        >>> w = np.arange(6.0).reshape(3, 2)
        >>> name_layers({"val_52": w.T, "MatMul_3": np.ones((2, 2))}, [("encoder.query", w)])
        {'val_52': 'encoder.query'}
    """
    found = {}
    for layer, array in layer_weights.items():
        module = next((name for name, weight in modules if is_block_of(array, weight)), None)
        if module is not None:
            found[layer] = module
    return found
