"""Quantization-aware training: fake quantization with a straight-through estimator.

Every Conv/Linear gets int8 fake quantization of its weight (symmetric, per output channel,
scale from the current weight) and of its input (asymmetric uint8, per tensor, range from
calibration). ``torch.fake_quantize_*`` pass gradients straight through inside the range.
The model is fine-tuned with the shared training engine, then exported as it is: OpenVINO
turns the fake-quantize ops into int8 FakeQuantize (int8 weights on disk, int8 kernels),
the ONNX exporter into QuantizeLinear/DequantizeLinear pairs that ONNX Runtime runs in int8.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import Task, run_model
from slimkit.train.engine import TrainConfig, fit

_WRAPPED = (nn.Conv1d, nn.Conv2d, nn.Linear)


class FakeQuant(nn.Module):
    """A Conv/Linear with int8 fake-quantized input and weight."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.observing = True
        self.frozen: tuple[float, int, torch.Tensor] | None = None

    def _weight_scale(self) -> torch.Tensor:
        w = self.layer.weight.detach()
        return (w.abs().amax(dim=tuple(range(1, w.dim()))) / 127.0).clamp(min=1e-8).float()

    def _weight(self) -> torch.Tensor:
        w = self.layer.weight
        scale = self.frozen[2] if self.frozen is not None else self._weight_scale()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -127, 127)

    def _act_params(self) -> tuple[float, int]:
        lo, hi = float(min(self.lo, 0.0)), float(max(self.hi, 0.0))
        scale = max((hi - lo) / 255.0, 1e-8)
        return scale, int(round(-lo / scale))

    def freeze(self) -> None:
        """Fix every quantization parameter as a constant, so exporters see plain fake-quantize ops."""
        self.frozen = (*self._act_params(), self._weight_scale())

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            # Calibration: the mean of per-batch extremes, like NNCF's default range estimator.
            self.lo = torch.minimum(self.lo, x.detach().min()) if self.lo.isinf() else 0.9 * self.lo + 0.1 * x.min()
            self.hi = torch.maximum(self.hi, x.detach().max()) if self.hi.isinf() else 0.9 * self.hi + 0.1 * x.max()
            return x
        scale, zero = self.frozen[:2] if self.frozen is not None else self._act_params()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._input(x)
        w = self._weight() if not self.observing else self.layer.weight
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)  # type: ignore[operator]


def strip_fake_quant(model: nn.Module) -> nn.Module:
    """Unwrap in place: each layer keeps its weight snapped to the int8 grid it was trained on.

    A runtime quantizer then recovers that grid exactly (symmetric per-channel max-abs scales).
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FakeQuant):
                with torch.no_grad():
                    child.layer.weight.copy_(child._weight())
                setattr(module, child_name, child.layer)
    return model


def insert_fake_quant(model: nn.Module, exclude: Sequence[str] = ()) -> list[str]:
    """Wrap every Conv/Linear (except the named ones) in place; returns the wrapped names."""
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, _WRAPPED) and full not in exclude:
                setattr(module, child_name, FakeQuant(child))
                wrapped.append(full)
    return wrapped


def _observe(model: nn.Module, items: Sequence[Inputs], observing: bool) -> None:
    for m in model.modules():
        if isinstance(m, FakeQuant):
            m.observing = observing
    if observing:
        with torch.no_grad():
            for item in items:
                run_model(model, item)
        _observe(model, items, False)


def qat_model(model: nn.Module, task: Task, calibration: Sequence[Inputs], epochs: int, lr: float,
              seed: int = 0, exclude: Sequence[str] = ()) -> tuple[nn.Module, dict[str, object]]:
    """Fake-quantize a copy of ``model``, calibrate, fine-tune it with :func:`fit`; returns (model, details).

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> from slimkit.core.task import Metric, Task, accuracy
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> d = Batches({"input": x}, y, 8)
        >>> t = Task("toy", torch.nn.Sequential(torch.nn.Linear(4, 2)), {"input": x[:1]}, d, d, d,
        ...          Metric("acc", accuracy), torch.nn.functional.cross_entropy)
        >>> m, info = qat_model(t.build_model(), t, [{"input": x[:8]}], epochs=1, lr=1e-3)
        >>> info["layers"]
        1
    """
    model = copy.deepcopy(model)
    wrapped = insert_fake_quant(model, exclude)  # children only: a bare Linear/Conv model is left as is
    model.eval()
    _observe(model, calibration, True)
    result = fit(model, task.train_data, task.loss, TrainConfig(epochs=epochs, lr=lr, seed=seed))
    model.eval()
    for m in model.modules():
        if isinstance(m, FakeQuant):
            m.freeze()
    history = [round(h.get("loss", float("nan")), 5) for h in result.history]
    return model, {"layers": len(wrapped), "epochs": epochs, "lr": lr, "loss_history": history}
