"""ONNX Runtime engine: onnxruntime.quantization (pre-processing, QDQ static, dynamic)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.core.files import atomic_path
from slimkit.techniques.quantize._config import QuantizeConfig

LAYER_OPS = ("Conv", "MatMul", "Gemm", "ConvTranspose")


def onnx_layers(path: Path, weighted_only: bool = False) -> list[tuple[str, str]]:
    """(node name, the weight it multiplies) of the Conv/MatMul/Gemm nodes of an ONNX graph, in graph
    order; ``weighted_only`` leaves out those multiplying two activations (attention scores)."""
    onnx = require("onnx")
    return _layers(onnx.load(str(path), load_external_data=False).graph, weighted_only)


def _layers(graph: Any, weighted_only: bool) -> list[tuple[str, str]]:
    weights = {i.name for i in graph.initializer}
    rows = []
    for n in graph.node:
        if n.op_type in LAYER_OPS:
            origin = next((i for i in n.input if i in weights), "")
            if origin or not weighted_only:
                rows.append((n.name, origin.removesuffix(".weight")))
    return rows


def weighted_nodes(graph: Any) -> list[tuple[Any, Any]]:
    """(node, its weight initializer) of the Conv/MatMul/Gemm nodes that read a constant matrix or kernel."""
    arrays = {i.name: i for i in graph.initializer if len(i.dims) >= 2}
    found = []
    for n in graph.node:
        weight = next((i for i in n.input if i in arrays), None) if n.op_type in LAYER_OPS else None
        if weight is not None:
            found.append((n, arrays[weight]))
    return found


def onnx_layer_weights(path: Path) -> dict[str, Any]:
    """``{node name: weight array}`` of the Conv/MatMul/Gemm nodes that read a constant matrix or kernel."""
    onnx = require("onnx")
    return {n.name: onnx.numpy_helper.to_array(w) for n, w in weighted_nodes(onnx.load(str(path)).graph)}


def preprocess(float_onnx: Path, out: Path) -> Path:
    """ONNX Runtime's recommended pre-processing (shape inference + graph optimization)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = Path(float_onnx).resolve()
    with atomic_path(Path(out).resolve()) as tmp:
        target = str(Path(tmp).resolve())  # before the working directory changes below
        with _scratch_cwd(Path(out).resolve().parent):
            try:
                quant_pre_process(str(source), target)
            except Exception:  # symbolic shape inference fails on some exporter outputs; ONNX's suffices
                quant_pre_process(str(source), target, skip_symbolic_shape=True)
    return out


@contextlib.contextmanager
def _scratch_cwd(parent: Path) -> Iterator[None]:
    """Run in a scratch folder removed afterwards: when symbolic shape inference fails (a dynamic
    sequence axis), ONNX Runtime leaves a temporary model and its weights in the working directory."""
    scratch = Path(tempfile.mkdtemp(prefix=".ort-pre", dir=parent))
    here = os.getcwd()
    os.chdir(scratch)
    try:
        yield
    finally:
        os.chdir(here)
        shutil.rmtree(scratch, ignore_errors=True)


class _Reader:
    """A CalibrationDataReader over single calibration items."""

    def __init__(self, items: Sequence[Inputs], names: Sequence[str]) -> None:
        self._feeds = iter([{n: item[n].numpy() for n in names} for item in items])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)


def quantize_onnx(pre_onnx: Path, out: Path, cfg: QuantizeConfig, calibration: Sequence[Inputs], *,
                  exclude: Sequence[str] = (), transformer: bool = False,
                  input_ranges: dict[str, tuple[float, int]] | None = None,
                  reduce_range: bool = False) -> dict[str, Any]:
    """Quantize a pre-processed float ONNX file per ``cfg`` into ``out``; returns what was done.

    ``transformer``: static quantization covers only the inputs of the layers with a weight
    (Linear, and Conv where there is one). By default ONNX Runtime also quantizes the
    activation-by-activation matmuls, the additions (the attention mask's, whose range reaches
    the float minimum), every output and the rest, which wrecks a transformer's outputs.
    ``input_ranges`` fixes named tensors' (scale, uint8 zero point) instead of calibrating them
    (quantization-aware training's input ranges). ``reduce_range`` puts the weights on a 7-bit grid
    (codes within +-64): without VNNI, ONNX Runtime's u8 x s8 kernels add pairs of products in
    int16 (``vpmaddubsw``), which overflows when two large weights of one sign meet inputs near
    255. Post-training it is off: on an AVX2 host it changed nothing on MiniLM (mean cosine
    0.9895 / 0.9893) and cost 2 of 360 digits on resnet18, and the metric is measured through the
    runtime anyway. A model trained on the 7-bit grid (QAT on such a CPU) needs it.
    """
    require("onnxruntime", "the onnxruntime target")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    logging.getLogger().setLevel(logging.ERROR)  # the calibrators log every tensor at INFO
    details: dict[str, Any] = {"engine": "onnxruntime.quantization", "scheme": cfg.scheme,
                               "weight_bits": 7 if reduce_range else 8}
    excluded = list(exclude) or None
    # The calibrators print progress to stdout; keep the CLI's output to what a user can act on.
    with atomic_path(out) as tmp, contextlib.redirect_stdout(io.StringIO()):
        if cfg.scheme == "int8-dynamic":
            quantize_dynamic(str(pre_onnx), str(tmp), per_channel=cfg.per_channel, weight_type=QuantType.QInt8,
                             nodes_to_exclude=excluded, reduce_range=reduce_range)
        else:
            import onnx

            graph = onnx.load(str(pre_onnx), load_external_data=False).graph  # structure only, read once
            names = [i.name for i in graph.input]
            reader = type("Reader", (_Reader, CalibrationDataReader), {})(calibration, names)
            extra: dict[str, Any] = {"CalibPercentile": 99.99, "CalibMovingAverage": cfg.calibration is None}
            ops = None
            if transformer:
                # QDQ ignores MatMulConstBOnly: the activation matmuls are excluded by name, and the
                # layers' outputs stay float (the bias and residual additions read them). Conv stays
                # in for a convolutional stem (ViT's patch embedding).
                ops = ["MatMul", "Gemm", "Conv"]
                extra["OpTypesToExcludeOutputQuantization"] = ops
                activation_matmuls = [n for n, origin in _layers(graph, False) if not origin]
                excluded = [*(excluded or []), *activation_matmuls]
                details["quantized_ops"] = "weighted MatMul/Gemm/Conv, inputs only (transformer)"
            if input_ranges:
                extra["TensorQuantOverrides"] = {
                    t: [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero, np.uint8)}]
                    for t, (scale, zero) in input_ranges.items()}
            method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                      "entropy": CalibrationMethod.Entropy, None: CalibrationMethod.MinMax}[cfg.calibration]
            quantize_static(
                str(pre_onnx), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
                # u8 activations x s8 weights: the VNNI-friendly pairing on x86.
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                calibrate_method=method, op_types_to_quantize=ops, extra_options=extra, reduce_range=reduce_range,
            )
            details.update({"calibration": cfg.calibration or "minmax (moving average)", "samples": len(calibration),
                            "format": "QDQ", "per_channel": cfg.per_channel})
            if transformer:
                details["float_readers"] = _float_readers(tmp)
    return details


def _float_readers(path: Path) -> int:
    """Rewire every reader of a quantized activation that is not itself a quantized layer (the residual
    additions, float-kept layers) to the float tensor; returns how many inputs were rewired.

    The QDQ quantizer gives a tensor one Quantize/Dequantize pair and points *all* its readers at the
    dequantized copy, so the residual stream beside a LayerNorm output that feeds a Linear got int8
    rounding too, which neither the "inputs of weighted layers only" scheme nor a QAT model has.
    """
    onnx = require("onnx")
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}

    def dequantized(name: str) -> Any:  # the QuantizeLinear behind an activation's DequantizeLinear
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q if q is not None and q.op_type == "QuantizeLinear" else None

    rewired = 0
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        # A quantized layer reads its weight through a DequantizeLinear of a constant.
        weights = {i for i in node.input if (d := producer.get(i)) is not None and d.op_type == "DequantizeLinear"
                   and producer.get(d.input[0]) is None}
        if node.op_type in LAYER_OPS and weights:
            continue
        for k, name in enumerate(node.input):
            q = dequantized(name)
            if q is not None:
                node.input[k] = q.input[0]
                rewired += 1
    if rewired:
        onnx.save(model, str(path))
    return rewired
