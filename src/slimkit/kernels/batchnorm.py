"""BatchNorm folding: an eval-mode BatchNorm after a Conv/Linear becomes part of its weight and bias.

In eval mode BatchNorm is the per-channel affine map ``y = (x - mean) * s + beta`` with
``s = gamma / sqrt(var + eps)``. Applied to ``x = W * in + b`` it equals a layer with
``W' = W * s`` (scaled per output channel) and ``b' = (b - mean) * s + beta``.

* :func:`fold_batchnorm` is the arithmetic for one pair, in place; :func:`why_not_foldable`
  says when it would not be exact, :func:`is_foldable_layer` / :func:`is_batchnorm` which
  modules compute exactly what their stock class does.
* :func:`reestimate` recomputes the running statistics after pruning or QAT changed the network.
* :func:`pairs_by_run` finds (layer, BatchNorm) pairs by running example inputs: a BatchNorm
  fed the very tensor a layer returned. :func:`fold_by_run` folds those pairs in place and
  undoes everything when the folded model does not match.

The fuse technique finds its pairs on the traced data flow of a copy and folds them with
:func:`fold_batchnorm`; quantization-aware training folds in place with :func:`fold_by_run`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU()).eval()
    >>> fold_by_run(net, {"input": torch.randn(1, 1, 5, 5)}), type(net[1]).__name__
    (['1'], 'Identity')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvTransposeNd
from torch.nn.utils import parametrize

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import run_model
from slimkit.export.parity import compare
from slimkit.kernels.hooks import Hooks

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


def out_features(layer: nn.Module) -> int:
    """Output channels of a Conv/ConvTranspose or output features of a Linear layer."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, _CONVS):
        return layer.out_channels
    raise TypeError(f"{type(layer).__name__} is not a Conv/ConvTranspose/Linear layer")


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
    if bn.num_features != out_features(layer):
        return f"BatchNorm has {bn.num_features} features but the layer has {out_features(layer)} outputs"
    if parametrize.is_parametrized(layer):
        # A parametrized weight (weight_norm, spectral_norm, ...) is recomputed on every
        # call, so writing the folded value into it would be overwritten.
        return "the layer's weight is parametrized"
    if not layer.weight.dtype.is_floating_point:
        return f"the layer's weight is {layer.weight.dtype}, not floating point"
    return None


def why_not_at_rank(layer: nn.Module, rank: int | None) -> str | None:
    """The reason a BatchNorm cannot fold into ``layer`` whose output, as run, had ``rank`` axes
    (None: not a tensor), or None when the rank allows it."""
    if isinstance(layer, nn.Linear) and rank != 2:
        # BatchNorm1d normalizes axis 1; only for 2-D (batch, features) is that Linear's output axis.
        return "Linear output is not 2-D (batch, features), so BatchNorm1d normalizes another axis"
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


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule called ``name`` is (a folded BatchNorm becomes ``nn.Identity``)."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def pairs_by_run(model: nn.Module, example_inputs: Inputs, layers: Mapping[str, nn.Module],
                 bns: Mapping[str, nn.Module]) -> tuple[dict[str, str], torch.Tensor]:
    """``{BatchNorm: the layer whose output it reads}`` on ``example_inputs``, and the model's output.

    A pair is kept where the BatchNorm's input is the very tensor the layer returned, each of
    them is called once and the layer feeds no other BatchNorm. A layer output also used
    elsewhere is not seen here: :func:`fold_by_run` catches it by comparing outputs.
    """
    produced: dict[int, str] = {}
    ranks: dict[str, int] = {}
    keep: list[torch.Tensor] = []  # outputs stay alive during the run, so their ids stay unique
    calls: Counter[str] = Counter()
    pairs: dict[str, str] = {}

    def on_layer(name: str) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_m: nn.Module, _args: object, out: torch.Tensor) -> None:
            calls[name] += 1
            ranks[name] = out.dim()
            produced[id(out)] = name
            keep.append(out)
        return hook

    def on_bn(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            calls[name] += 1
            if args and id(args[0]) in produced:
                pairs[name] = produced[id(args[0])]
        return hook

    with Hooks() as hooks:
        for name, module in layers.items():
            hooks.forward(module, on_layer(name))
        for name, module in bns.items():
            hooks.pre(module, on_bn(name))
        with torch.no_grad():
            reference = run_model(model, example_inputs)
    used = Counter(pairs.values())
    pairs = {bn: layer for bn, layer in pairs.items()
             if calls[bn] == 1 and calls[layer] == 1 and used[layer] == 1
             and why_not_at_rank(layers[layer], ranks[layer]) is None}
    return pairs, reference


# The folded model must match the unfolded one this closely on the example inputs, else nothing is folded.
FOLD_MIN_COSINE = 0.99999
FOLD_MAX_DIFF = 1e-3  # of the largest output


def fold_by_run(model: nn.Module, example_inputs: Inputs,
                types: tuple[type[nn.Module], ...] = (*_CONVS, nn.Linear)) -> list[str]:
    """Fold (in place, eval statistics) each BatchNorm that reads a layer's output; returns their names.

    The layers are the stock modules of ``types`` (Conv/ConvTranspose/Linear by default), the
    pairs those of :func:`pairs_by_run` that :func:`why_not_foldable` accepts; each folded
    BatchNorm becomes ``nn.Identity``. The folded model must then match the original on
    ``example_inputs`` (cosine >= :data:`FOLD_MIN_COSINE`, largest difference <=
    :data:`FOLD_MAX_DIFF` of the largest output), else every fold is undone and ``[]`` returned.
    """
    layers = {n: cast(FoldableLayer, m) for n, m in model.named_modules()
              if isinstance(m, types) and is_foldable_layer(m)}
    bns = {n: cast(_BatchNorm, m) for n, m in model.named_modules() if is_batchnorm(m)}
    pairs, reference = pairs_by_run(model, example_inputs, layers, bns)
    pairs = {bn: layer for bn, layer in pairs.items() if why_not_foldable(layers[layer], bns[bn]) is None}
    if not pairs:
        return []
    saved = {layer: _values(layers[layer]) for layer in pairs.values()}
    for bn, layer in pairs.items():
        fold_batchnorm(layers[layer], bns[bn])
        replace_module(model, bn, nn.Identity())
    with torch.no_grad():
        parity = compare(reference, run_model(model, example_inputs))
    if parity.cosine < FOLD_MIN_COSINE or parity.max_abs_diff > FOLD_MAX_DIFF * parity.reference_scale:
        # A pairing the run could not see through (the layer's output used elsewhere too): undo.
        for bn, layer in pairs.items():
            weight, bias = saved[layer]
            _restore(layers[layer], weight, bias)
            replace_module(model, bn, bns[bn])
        return []
    return sorted(pairs)


def _values(layer: FoldableLayer) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Copies of the weight and bias that :func:`fold_batchnorm` overwrites in place."""
    bias = layer.bias.detach().clone() if layer.bias is not None else None
    return layer.weight.detach().clone(), bias


@torch.no_grad()
def _restore(layer: FoldableLayer, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Undo :func:`fold_batchnorm`: the saved values, and no bias where the layer had none."""
    layer.weight.copy_(weight)
    if bias is None:
        layer.bias = None  # the Parameter fold_batchnorm added goes again
    elif layer.bias is not None:
        layer.bias.copy_(bias)


@torch.no_grad()
def reestimate(model: nn.Module, data: Iterable[Batch], max_batches: int = 64) -> int:
    """Recompute every BatchNorm's running mean and variance on ``data``; returns how many it has.

    Pruning removes channels and QAT changes the weights, so the statistics a BatchNorm kept are
    those of another network; fine-tuning moves them only by its momentum per step (MobileNetV3's
    0.01 leaves a short recovery at the old values). The exact average over up to ``max_batches``
    batches replaces them; only the BatchNorms run in training mode (dropout stays off), and the
    model is left in eval mode.

    Example:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.01))
        >>> x = torch.randn(64, 3) * 5 + 2
        >>> reestimate(net, [({"input": x}, torch.zeros(64))])
        1
        >>> torch.allclose(net[1].running_mean, net[0](x).mean(0), atol=1e-5)
        True
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    kept = [{k: v.clone() for k, v in m.state_dict().items() if k.startswith(("running_", "num_batches"))}
            for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch seen, not an exponential one
        m.train()
    ran = 0
    try:
        for i, (inputs, _) in enumerate(data):
            if i >= max_batches:
                break
            if next(iter(inputs.values())).shape[0] > 1:  # one item has no batch statistics
                run_model(model, inputs)
                ran += 1
    finally:
        for m, momentum, old in zip(norms, momenta, kept, strict=True):
            m.momentum = momentum
            if not ran:  # no batch of two or more items: the old statistics beat none
                m.load_state_dict({**m.state_dict(), **old})
        model.eval()
    return len(norms) if ran else 0
