"""A quantization-aware-trained model deployed on ONNX Runtime, as it was trained.

The fake-quantized model is unwrapped (each weight stays on the int8 grid it was trained on),
exported to ONNX and handed to ONNX Runtime's QDQ quantizer, which is told what training
decided instead of deciding it again:

- each trained layer's input keeps the scale and zero point QAT used (the quantizer would
  re-calibrate it: a moving average of per-batch extremes, not the range the weights were
  trained against). With the residual stream left float (see ``quantize_onnx``), the deployed
  model computes what the fake-quantized one did, up to rounding;
- layers the user excluded stay float. Layers QAT could not wrap (torch's ``nn.MultiheadAttention``
  and transformer layers read their projections' weights directly) are quantized post-training,
  calibrated like any other, and listed.

Exporters rename the constants they fold (a Linear's transposed weight becomes "val_52"), so ONNX
layers are matched to torch layers by the weight values themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.core.task import Task
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._config import QuantizeConfig
from slimkit.techniques.quantize._origins import in_module, is_block_of


def match_layers(path: Path, weights: Sequence[np.ndarray]) -> list[tuple[str, str, int]]:
    """(node name, its activation input, index into ``weights``) of every Conv/MatMul/Gemm node of an
    ONNX graph whose weight is one of ``weights`` or a block of its rows, found by value."""
    from slimkit.techniques.quantize._onnxruntime import weighted_nodes

    onnx = require("onnx", "quantization-aware training for onnxruntime")
    found = []
    for n, weight in weighted_nodes(onnx.load(str(path)).graph):
        value = onnx.numpy_helper.to_array(weight)
        index = next((k for k, w in enumerate(weights) if is_block_of(value, w)), None)
        activation = next((i for i in n.input if i and i != weight.name), None)
        if index is not None and activation is not None:
            found.append((n.name, activation, index))
    return found


def deploy_qat_onnxruntime(qmodel: nn.Module, task: Task, cfg: QuantizeConfig, workdir: Path, threads: int,
                           calibration: Sequence[Inputs], transformer: bool, info: dict[str, Any],
                           say: Callable[[str], None]) -> Deployed:
    """Export the frozen fake-quantized ``qmodel`` for ONNX Runtime with its trained input ranges; records
    what was done in ``info`` (``float_layers``, ``post_training_layers``, ``trained_input_ranges``,
    ``runtime_quantizer``)."""
    from slimkit.targets.onnxruntime import load_onnx
    from slimkit.techniques.quantize._onnxruntime import preprocess, quantize_onnx
    from slimkit.techniques.quantize._qat import FakeQuant, strip_fake_quant
    from slimkit.techniques.quantize._registry import export_float

    wrapped = {name: m for name, m in qmodel.named_modules() if isinstance(m, FakeQuant)}
    # (scale, zero point) of the input; every FakeQuant is frozen once training ends
    ranges = {name: (m.frozen[0], m.frozen[1]) for name, m in wrapped.items() if m.frozen is not None}
    plain = strip_fake_quant(qmodel)
    trained_names = list(wrapped)
    trained = [plain.get_parameter(f"{n}.weight").detach().numpy() for n in trained_names]
    owned = {f"{name}.weight" for name in trained_names}
    # Matrices no wrapped layer owns (embedding tables too, which no Conv/MatMul/Gemm reads, so
    # they match nothing): those of excluded modules stay float, the rest are calibrated.
    untrained = [(n, p.detach().numpy()) for n, p in plain.named_parameters() if p.dim() >= 2 and n not in owned]
    is_excluded = [any(in_module(n, e) for e in cfg.exclude) for n, _ in untrained]
    pre = preprocess(export_float(plain, task.example_inputs, "onnxruntime", workdir), workdir / "float.pre.onnx")
    matches = match_layers(pre, trained + [w for _, w in untrained])  # one pass over the graph
    float_layers = [node for node, _, k in matches if k >= len(trained) and is_excluded[k - len(trained)]]
    post_training = [node for node, _, k in matches if k >= len(trained) and not is_excluded[k - len(trained)]]
    overrides: dict[str, tuple[float, int]] = {}
    for _, tensor, k in matches:
        if k >= len(trained):
            continue
        scale, zero = ranges[trained_names[k]]
        if tensor in overrides and overrides[tensor] != (scale, zero):
            # One tensor is quantized once for all its readers: the widest of their ranges.
            lo = min(-zero * scale, -overrides[tensor][1] * overrides[tensor][0])
            hi = max((255 - zero) * scale, (255 - overrides[tensor][1]) * overrides[tensor][0])
            scale, zero = (hi - lo) / 255.0, int(round(-lo / ((hi - lo) / 255.0)))
        overrides[tensor] = (scale, zero)
    if post_training:
        say(f"{len(post_training)} layer(s) that quantization-aware training could not wrap (torch's attention "
            "and transformer layers read their weights directly) are quantized post-training")
    path = workdir / "model.onnx"
    info["runtime_quantizer"] = quantize_onnx(pre, path, cfg, calibration, exclude=float_layers,
                                              transformer=transformer, input_ranges=overrides,
                                              reduce_range=info["weight_max"] < 127)
    info["float_layers"] = float_layers
    info["post_training_layers"] = post_training
    info["trained_input_ranges"] = len(overrides)
    return load_onnx(path, threads)
