"""SmoothQuant-style input smoothing of fake-quantized Linears (transformers, ``smooth``).

A few hidden channels of a LayerNorm output carry values far larger than the rest, so one
per-tensor input range leaves the ordinary channels a handful of levels. Each Linear's input is
divided per channel by ``s = max|x|^a / max|W|^(1-a)`` and its weight columns multiplied by
``s`` (SmoothQuant's migration of the range into the per-channel weights): the float function
is unchanged, the division is one elementwise op in the exported graph. On a pruned MiniLM,
calibrated fake int8 came closest to float around ``a`` = :data:`SMOOTH_ALPHA`; a half barely
helped and values near 1 overshot.

Layers reading one tensor (query, key, value) share a divisor, so OpenVINO divides and
quantizes it once, which ran faster than one divisor per layer, close to NNCF's own int8.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import run_model
from slimkit.kernels.hooks import Hooks
from slimkit.techniques.quantize._qat_wrap import FakeQuant

SMOOTH_ALPHA = 0.85  # transformers: how much of each input channel's range moves into the weights (see above)


def smooth_inputs(model: nn.Module, items: Sequence[Inputs], alpha: float = SMOOTH_ALPHA) -> int:
    """Migrate input range into the weights of every fake-quantized Linear (see the module
    docstring); returns how many layers were smoothed. ``model`` is still observing.

    Example:
        >>> from slimkit.techniques.quantize._qat_wrap import insert_fake_quant
        >>> _ = torch.manual_seed(0); net = nn.Sequential(nn.Linear(4, 3)).eval()
        >>> x = torch.randn(8, 4); x[:, 0] *= 30  # one outlier channel
        >>> before = net(x); _ = insert_fake_quant(net)
        >>> smooth_inputs(net, [{"input": x}]), torch.allclose(net(x), before, atol=1e-4)
        (1, True)
    """
    layers = {n: m for n, m in model.named_modules() if isinstance(m, FakeQuant) and isinstance(m.layer, nn.Linear)}
    peak, groups = _input_peaks(model, layers, items)
    for group in groups:
        w = torch.stack([layers[n].layer.weight.detach().abs().amax(0).float() for n in group]).amax(0)
        x = torch.stack([peak[n] for n in group]).amax(0)
        # A floor on s: a near-silent channel is not blown up into the weight's range.
        divisor = (x.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-2)
        for n in group:
            layers[n].set_smooth(divisor)
    for m in layers.values():
        m.reset_ranges()
    return sum(len(g) for g in groups)


def _input_peaks(model: nn.Module, layers: Mapping[str, FakeQuant],
                 items: Sequence[Inputs]) -> tuple[dict[str, torch.Tensor], list[list[str]]]:
    """Each layer's largest |input| per channel over ``items``, and the groups of layers that share
    a divisor (those reading one tensor of the first item)."""
    peak: dict[str, torch.Tensor] = {}
    readers: dict[int, list[str]] = {}  # id of an input tensor (first item) -> the layers that read it
    alive: list[torch.Tensor] = []  # inputs stay referenced during that run, so their ids stay unique
    calls: dict[str, int] = {}
    first = True

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if not args:
                return
            x = args[0].detach()
            if first:
                readers.setdefault(id(args[0]), []).append(name)
                alive.append(args[0])
                calls[name] = calls.get(name, 0) + 1
            a = x.abs().reshape(-1, x.shape[-1]).amax(0).float()
            peak[name] = torch.maximum(peak[name], a) if name in peak else a
        return hook

    with Hooks() as hooks, torch.no_grad():
        for n, m in layers.items():
            hooks.pre(m, record(n))
        for i, item in enumerate(items):
            first = i == 0
            run_model(model, item)
            alive.clear()
    # Layers that read one tensor (a transformer's query, key and value) share one divisor, sized
    # by their largest weights, so the exported graph divides and quantizes that tensor once
    # (OpenVINO merges the identical ops) instead of once per reader.
    # A layer called more than once (a shared weight) would need two divisors: left as it is.
    groups = [[n for n in g if calls[n] == 1] for g in readers.values()]
    return peak, [g for g in groups if g]
