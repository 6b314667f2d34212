"""Quantization: int8 (static, dynamic, weight-only), int4 weight-only, fp16/bf16, QAT.

The best engine per runtime does the work: NNCF on OpenVINO, onnxruntime.quantization (QDQ)
on ONNX Runtime, torchao (or casts) on torch. :func:`support` says which scheme runs on which
target and why a combination is not offered; per-layer sensitivity and the accuracy-aware
float fallback work on OpenVINO and ONNX Runtime.

Example:
    >>> import json
    >>> cfg = QuantizeConfig("int8-static", "openvino", calibration="mse")
    >>> json.loads(json.dumps(cfg.to_dict()))["data"]["calibration"]
    'mse'
    >>> support("int8-dynamic", "onnxruntime").ok
    True
"""

from slimkit.techniques.quantize._apply import QuantizeResult, quantize_for_target
from slimkit.techniques.quantize._config import CALIBRATIONS, SCHEMES, QuantizeConfig
from slimkit.techniques.quantize._registry import QUANTIZERS, Quantizer, Support
from slimkit.techniques.quantize._step import TECHNIQUE, describe_engine
from slimkit.techniques.quantize._support import check, matrix_rows, support

__all__ = [
    "TECHNIQUE",
    "CALIBRATIONS",
    "SCHEMES",
    "QUANTIZERS",
    "QuantizeConfig",
    "Quantizer",
    "QuantizeResult",
    "Support",
    "check",
    "describe_engine",
    "matrix_rows",
    "quantize_for_target",
    "support",
]

