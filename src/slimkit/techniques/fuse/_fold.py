"""The folding arithmetic: BatchNorm after a Conv/Linear becomes part of its weight and bias.

In eval mode BatchNorm is the per-channel affine map ``y = (x - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. Applied to ``x = W * in + b`` it equals a layer with
``W' = W * s`` (scaled per output channel) and ``b' = (b - mean) * s + beta``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

FoldableLayer = nn.Conv1d | nn.Conv2d | nn.Conv3d | _ConvTransposeNd | nn.Linear
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _stock(module: nn.Module, bases: tuple[type[nn.Module], ...]) -> bool:
    """An instance of one of ``bases`` that computes exactly what that base computes.

    Subclasses that override the computation (weight-standardized convs, custom norms)
    look like a Conv or BatchNorm to ``isinstance`` but folding would change their output.
    """
    for base in bases:
        if isinstance(module, base):
            return all(
                getattr(type(module), attr) is getattr(base, attr)
                for attr in ("forward", "_conv_forward")
                if hasattr(base, attr)
            )
    return False


def is_foldable_layer(module: nn.Module) -> bool:
    """A stock Conv/ConvTranspose/Linear, whose output channels a following BatchNorm can fold into."""
    return _stock(module, (*_CONVS, nn.Linear))


def is_batchnorm(module: nn.Module) -> bool:
    """A stock BatchNorm (SyncBatchNorm included: in eval mode it computes the same)."""
    return _stock(module, _BATCHNORMS)


def kind_of(layer: nn.Module) -> str:
    """``"conv_bn"`` or ``"linear_bn"``: the FuseConfig switch that governs this pair."""
    return "linear_bn" if isinstance(layer, nn.Linear) else "conv_bn"


def _out_features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def why_not_foldable(layer: nn.Module, bn: nn.Module) -> str | None:
    """The reason this (layer, bn) pair cannot be folded exactly, or None when it can."""
    if not is_foldable_layer(layer) or not is_batchnorm(bn):
        return "not a stock Conv/Linear followed by a stock BatchNorm"
    if isinstance(layer, nn.Linear) and not isinstance(bn, nn.BatchNorm1d):
        return "Linear is followed by a BatchNorm other than BatchNorm1d"
    if bn.running_mean is None or bn.running_var is None:
        # Without running statistics BatchNorm normalizes with each batch's own statistics,
        # which is not a fixed affine map and so cannot live in a weight.
        return "BatchNorm has no running statistics (track_running_stats=False)"
    if bn.num_features != _out_features(layer):
        return f"BatchNorm has {bn.num_features} features but the layer has {_out_features(layer)} outputs"
    if parametrize.is_parametrized(layer):
        # A parametrized weight (weight_norm, spectral_norm, ...) is recomputed on every
        # call, so writing the folded value into it would be overwritten.
        return "the layer's weight is parametrized"
    if not layer.weight.dtype.is_floating_point:
        return f"the layer's weight is {layer.weight.dtype}, not floating point"
    return None


def _scale_shift(bn: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``s`` and ``beta - mean * s`` in float64, so folding adds no rounding of its own."""
    assert bn.running_mean is not None and bn.running_var is not None
    mean = bn.running_mean.double()
    var = bn.running_var.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


@torch.no_grad()
def fold_batchnorm(layer: FoldableLayer, bn: _BatchNorm) -> None:
    """Fold eval-mode ``bn`` into ``layer`` in place, so that ``layer(x) == bn(layer(x))``.

    The caller then replaces ``bn`` with ``nn.Identity``. Conv and Linear weights carry
    output channels on axis 0; ConvTranspose weights are ``(in, out // groups, *k)``, so
    their scale is laid out per group along axis 1.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> conv, bn = nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4).eval()
        >>> bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2)  # doctest: +ELLIPSIS
        tensor(...)
        tensor(...)
        >>> x = torch.randn(1, 2, 5, 5)
        >>> ref = bn(conv(x))
        >>> fold_batchnorm(conv, bn)
        >>> torch.allclose(conv(x), ref, atol=1e-5)
        True
    """
    reason = why_not_foldable(layer, bn)
    if reason is not None:
        raise ValueError(f"cannot fold {type(bn).__name__} into {type(layer).__name__}: {reason}")
    scale, shift = _scale_shift(bn)
    weight = layer.weight
    w = weight.double()
    if isinstance(layer, _ConvTransposeNd):
        groups = layer.groups
        grouped = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
        per_group = scale.reshape(groups, 1, w.shape[1], *([1] * (w.dim() - 2)))
        folded = (grouped * per_group).reshape(w.shape)
    else:
        folded = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
    new_bias = (bias * scale + shift).to(dtype=weight.dtype, device=weight.device)
    # Copy into the existing Parameter: its identity and state_dict key stay as they were.
    weight.copy_(folded.to(weight.dtype))
    if layer.bias is not None:
        layer.bias.copy_(new_bias)
    else:
        layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
