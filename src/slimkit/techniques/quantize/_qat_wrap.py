"""Fake-quantized layers for quantization-aware training, with a straight-through estimator.

Every Conv/Linear gets int8 fake quantization of its weight (symmetric, scale from the current
weight) and of its input (asymmetric uint8, per tensor, range from calibration).
``torch.fake_quantize_*`` pass gradients straight through inside the range.

Weights are per output channel by default. Per tensor (``per_channel=False``), each layer's
weight range is a fraction of its largest weight, picked on the calibration inputs as the one
with the least output error. A folded channel fed by a dead input can carry weights hundreds of
times larger than the rest (MobileNetV2's first depthwise conv is the classic case); they
multiply zeros, so clipping them costs nothing, while a range set by them leaves every other
channel with a handful of int8 levels.

Transformers on OpenVINO also get their attention queries and keys fake-quantized
(``attention``, symmetric int8 like NNCF's), so the attention scores run in int8 too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.techniques.quantize._origins import in_module

_WRAPPED = (nn.Conv1d, nn.Conv2d, nn.Linear)
# torch's own attention and transformer layers read their Linears' .weight directly (fused fast
# paths), so a wrapper would break them: their Linears stay float. Hugging Face layers call theirs.
_READS_WEIGHTS = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
WrappedLayer = nn.Conv1d | nn.Conv2d | nn.Linear


# Per-tensor weight ranges tried during calibration: max |w| times 2^(-k/3), down to 1/1024.
RANGE_FRACTIONS = tuple(2.0 ** (-k / 3) for k in range(31))
RANGE_SEARCH_ITEMS = 32  # calibration items the per-tensor range search scores (of the layer's inputs)


class FakeQuant(nn.Module):
    """A Conv/Linear with int8 fake-quantized input and weight (per channel, or per tensor)."""

    # Buffers, declared for the type checker (nn.Module's attribute lookup would type them loosely).
    lo: torch.Tensor
    hi: torch.Tensor
    smooth: torch.Tensor | None
    range_fraction: torch.Tensor
    range_error: torch.Tensor
    out_lo: torch.Tensor | None
    out_hi: torch.Tensor | None

    def __init__(self, layer: WrappedLayer, per_channel: bool = True, weight_max: int = 127) -> None:
        super().__init__()
        self.layer = layer
        self.per_channel = per_channel
        self.weight_max = weight_max  # the largest weight code: 127, or 64 (see int8_dot_saturates)
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.register_buffer("smooth", None)  # per input channel divisor, folded into the weight (Linear)
        if not per_channel:  # the weight range as a fraction of max |w|, and each candidate's output error
            self.register_buffer("range_fraction", torch.tensor(1.0))
            self.register_buffer("range_error", torch.zeros(len(RANGE_FRACTIONS), dtype=torch.float64))
        self.searched = 0
        self.observing = True
        self.frozen: tuple[float, int, torch.Tensor] | None = None
        self.output_frozen: float | None = None
        self.register_buffer("out_lo", None)  # set by quantize_output(): the output's range
        self.register_buffer("out_hi", None)

    def quantize_output(self) -> None:
        """Fake-quantize the output too (per tensor, symmetric int8): an attention query/key feeding a
        matmul, which OpenVINO then runs in int8 (see :func:`insert_fake_quant`)."""
        self.out_lo = torch.tensor(float("inf"))
        self.out_hi = torch.tensor(float("-inf"))

    def _weight_scale(self) -> torch.Tensor:
        """Symmetric int8 scales: one per output channel, or one (0-d) for the whole tensor."""
        w = self.layer.weight.detach()
        if not self.per_channel:
            return (self.range_fraction * w.abs().max() / self.weight_max).clamp(min=1e-8).float()
        return (w.abs().amax(dim=tuple(range(1, w.dim()))) / self.weight_max).clamp(min=1e-8).float()

    def _weight(self) -> torch.Tensor:
        w = self.layer.weight
        scale = self.frozen[2] if self.frozen is not None else self._weight_scale()
        if self.weight_max < 127 and self.frozen is None:
            # Clip to the narrow grid first and keep the fake-quantize op at the int8 range: the
            # exporters then write an ordinary 255-level int8 quantizer whose codes stay within
            # +-weight_max (a 129-level one is not run as int8 by OpenVINO). freeze() clips the
            # stored weight instead, so the exported quantizer reads a plain constant, which
            # OpenVINO stores as int8 (behind a clip op the IR kept the weights in fp32).
            w = self._clip(w, scale)
        if not self.per_channel:
            return torch.fake_quantize_per_tensor_affine(w, float(scale), 0, -127, 127)
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    def _clip(self, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        bound = scale * self.weight_max
        if self.per_channel:
            bound = bound.view(-1, *[1] * (w.dim() - 1))
        return torch.maximum(torch.minimum(w, bound), -bound)

    def _run(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, bias)
        return self.layer._conv_forward(x, w, bias)

    def _score_ranges(self, x: torch.Tensor) -> None:
        """Add each candidate per-tensor range's output error on ``x`` (a calibration input).

        One layer call scores every candidate: the weight errors are stacked as extra output
        channels (group by group, so grouped and depthwise convs keep their structure).
        """
        w = self.layer.weight.detach().float()
        top = float(w.abs().max())
        if top == 0.0:
            return
        k, cout = len(RANGE_FRACTIONS), w.shape[0]
        scales = (torch.tensor(RANGE_FRACTIONS) * top / self.weight_max).clamp(min=1e-8).view(-1, *[1] * w.dim())
        delta = (w / scales).round().clamp(-self.weight_max, self.weight_max) * scales - w  # (k, *w.shape)
        groups = getattr(self.layer, "groups", 1)
        stacked = delta.reshape(k, groups, cout // groups, *w.shape[1:]).transpose(0, 1).reshape(k * cout,
                                                                                                 *w.shape[1:])
        out = self._run(x.float(), stacked.to(x.dtype), None).double().pow(2)
        if isinstance(self.layer, nn.Linear):
            err = out.reshape(*out.shape[:-1], k, cout).transpose(-2, 0).reshape(k, -1).sum(1)
        else:
            err = out.reshape(out.shape[0], groups, k, -1).transpose(0, 2).reshape(k, -1).sum(1)
        self.range_error += err
        self.searched += 1

    def pick_range(self) -> None:
        """Per tensor: keep the range with the least output error over the scored calibration inputs."""
        if not self.per_channel and self.searched:
            self.range_fraction.fill_(RANGE_FRACTIONS[int(self.range_error.argmin())])

    def set_smooth(self, divisor: torch.Tensor) -> None:
        """Divide the input per channel by ``divisor`` and multiply the weight's columns by it."""
        with torch.no_grad():
            self.layer.weight.mul_(divisor.to(self.layer.weight.dtype))
        self.smooth = divisor.detach().clone()

    def reset_ranges(self) -> None:
        """Forget what calibration has observed (the input changed, e.g. after smoothing)."""
        self.lo.fill_(float("inf"))
        self.hi.fill_(float("-inf"))
        if self.out_lo is not None:
            self.quantize_output()
        self.searched = 0
        if not self.per_channel:
            self.range_error.zero_()

    @staticmethod
    def _act_params(lo_t: torch.Tensor, hi_t: torch.Tensor) -> tuple[float, int]:
        lo, hi = min(float(lo_t), 0.0), max(float(hi_t), 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        return scale, int(round(-lo / scale))

    def freeze(self) -> None:
        """Fix every quantization parameter as a constant, so exporters see plain fake-quantize ops."""
        self.frozen = (*self._act_params(self.lo, self.hi), self._weight_scale())
        if self.weight_max < 127:
            with torch.no_grad():
                self.layer.weight.copy_(self._clip(self.layer.weight, self.frozen[2]))
        if self.out_lo is not None and self.out_hi is not None:
            self.output_frozen = self._output_scale(self.out_lo, self.out_hi)

    @staticmethod
    def _observe_range(lo: torch.Tensor, hi: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Calibration: the mean of per-batch extremes, like NNCF's default range estimator.
        x = x.detach()
        if lo.isinf():
            return torch.minimum(lo, x.min()), torch.maximum(hi, x.max())
        return 0.9 * lo + 0.1 * x.min(), 0.9 * hi + 0.1 * x.max()

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            if not self.per_channel and self.searched < RANGE_SEARCH_ITEMS:
                with torch.no_grad():
                    self._score_ranges(x.detach())
            self.lo, self.hi = self._observe_range(self.lo, self.hi, x)
            return x
        scale, zero = self.frozen[:2] if self.frozen is not None else self._act_params(self.lo, self.hi)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        if self.out_lo is None or self.out_hi is None:
            return y
        if self.observing:
            self.out_lo, self.out_hi = self._observe_range(self.out_lo, self.out_hi, y)
            return y
        scale = self.output_frozen if self.output_frozen is not None else self._output_scale(self.out_lo, self.out_hi)
        return torch.fake_quantize_per_tensor_affine(y, scale, 0, -128, 127)

    @staticmethod
    def _output_scale(lo: torch.Tensor, hi: torch.Tensor) -> float:
        # Symmetric signed int8 (zero point 0), as NNCF quantizes queries and keys: OpenVINO's
        # int8 attention kernel takes only that; an asymmetric range left it in bf16 with
        # dequantizing converts in front, slower than not quantizing the attention at all.
        top = max(abs(float(lo)), abs(float(hi)))
        return max(top / 128.0, 1e-8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.smooth is not None:
            x = x / self.smooth
        x = self._input(x)
        w = self._weight() if not self.observing else self.layer.weight
        return self._output(self._run(x, w, self._bias()))

    def _bias(self) -> torch.Tensor | None:
        # nn.Linear does not declare its bias (a Parameter or None) for type checkers; Conv does.
        bias = self.layer.bias
        return bias if isinstance(bias, torch.Tensor) else None


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Unwrap in place: each layer keeps its weight snapped to the int8 grid it was trained on.

    A runtime quantizer then recovers that grid exactly (symmetric max-abs scales, per channel
    or per tensor: a per-tensor range below max |w| leaves the clipped weights at +-weight_max steps).
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FakeQuant):
                if child.smooth is not None:
                    raise ValueError("a smoothed layer needs its input division: export the fake-quantized model")
                with torch.no_grad():
                    child.layer.weight.copy_(child._weight())
                setattr(module, child_name, child.layer)
    return model


def insert_fake_quant(model: nn.Module, exclude: Sequence[str] = (), per_channel: bool = True,
                      attention: bool = False, weight_max: int = 127) -> list[str]:
    """Wrap every Conv/Linear (except the named ones and those inside named modules) in place;
    returns the wrapped names.

    ``attention``: in every module with ``query``, ``key`` and ``value`` Linears (Hugging Face
    BERT, RoBERTa, ViT self-attention), the query and key outputs are fake-quantized too, so
    the attention scores' matmul reads int8 on both sides, as NNCF's transformer scheme does.
    OpenVINO then runs the attention block (scores, softmax, context) as one int8 kernel
    instead of bf16: a little faster on a pruned MiniLM after QAT, at the same cosine.

    Example:
        >>> att = nn.Module(); att.query, att.key, att.value = (nn.Linear(4, 4) for _ in range(3))
        >>> insert_fake_quant(att, attention=True), att.key.out_lo is not None, att.value.out_lo is None
        (['query', 'key', 'value'], True, True)
    """
    wrapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, _READS_WEIGHTS):
            continue
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, _WRAPPED) and not any(in_module(full, e) for e in exclude):
                setattr(module, child_name, FakeQuant(child, per_channel, weight_max))
                wrapped.append(full)
        if attention and all(isinstance(getattr(module, n, None), FakeQuant) for n in ("query", "key", "value")):
            module.query.quantize_output()
            module.key.quantize_output()
    return wrapped
