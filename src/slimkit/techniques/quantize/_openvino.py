"""OpenVINO engine: NNCF post-training quantization and weight compression of a float IR."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slimkit._optional import require
from slimkit.core.data import Inputs
from slimkit.export.openvino import save_ir
from slimkit.techniques.quantize._config import QuantizeConfig

# Ops NNCF puts int8 weights on; these are the "layers" of sensitivity and float fallback.
_LAYER_OPS = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")


def openvino_layers(xml: Path, weighted_only: bool = False) -> list[tuple[str, str]]:
    """(op name, where it came from) of the quantizable ops of a float IR, in graph order.

    ``weighted_only`` drops activation-by-activation MatMuls (attention scores), which
    weight-only schemes never touch. OpenVINO renames a convolution when it folds BatchNorm
    into it ("Multiply_123"); the torch module it came from is recovered from the nearest
    consumer that kept its name.
    """
    ov = require("openvino")
    model = ov.Core().read_model(str(xml))
    rows = []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _LAYER_OPS and (not weighted_only or _has_constant_input(op)):
            rows.append((op.get_friendly_name(), _origin(op)))
        elif weighted_only and kind == "Gather" and _is_constant(op.input_value(0).get_node()):
            # Embedding tables: weight compression covers them too, so they can stay float as well.
            rows.append((op.get_friendly_name(), _origin(op) or "embedding"))
    return rows


def _is_constant(node: Any) -> bool:
    while node.get_type_name() in ("Convert", "Reshape", "Transpose") and node.inputs():
        node = node.input_value(0).get_node()
    return bool(node.get_type_name() == "Constant" and len(node.get_output_partial_shape(0)) >= 2)


def _has_constant_input(op: Any) -> bool:
    return any(_is_constant(port.get_source_output().get_node()) for port in op.inputs())


def _origin(op: Any, depth: int = 3) -> str:
    name = op.get_friendly_name()
    if name.startswith("__module."):
        return name.split("/")[0].removeprefix("__module.").removeprefix("model.")
    if depth == 0:
        return ""
    for output in op.outputs():
        for target in output.get_target_inputs():
            found = _origin(target.get_node(), depth - 1)
            if found:
                return found
    return ""


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF draws progress bars and per-node notes a user cannot act on."""
    nncf = require("nncf", "quantization for OpenVINO")
    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _range_estimator(calibration: str | None) -> Any:
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Sets

    # mse: NNCF's histogram aggregator picks the range with the least quantization error.
    return {"minmax": Sets.MINMAX, "percentile": Sets.MEAN_QUANTILE, "mse": Sets.HISTOGRAM}.get(calibration or "")


def _advanced(cfg: QuantizeConfig, transformer: bool) -> Any:
    nncf = require("nncf", "int8 quantization for OpenVINO")
    kwargs: dict[str, Any] = {"disable_bias_correction": not cfg.bias_correction}
    estimator = _range_estimator(cfg.calibration)
    if estimator is not None:
        kwargs["activations_range_estimator_params"] = estimator
    smooth = transformer if cfg.smooth_quant is None else cfg.smooth_quant
    if not smooth:
        kwargs["smooth_quant_alphas"] = nncf.AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
    if not cfg.per_channel:
        from nncf.quantization.advanced_parameters import QuantizationParameters

        kwargs["weights_quantization_params"] = QuantizationParameters(per_channel=False)
    return nncf.AdvancedQuantizationParameters(**kwargs)


def quantize_ir(float_xml: Path, out_xml: Path, cfg: QuantizeConfig, calibration: Sequence[Inputs], *,
                transformer: bool, exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Quantize or compress ``float_xml`` per ``cfg`` into ``out_xml``; returns what was done."""
    ov = require("openvino", "the openvino target")
    model = ov.Core().read_model(str(float_xml))
    details: dict[str, Any] = {"engine": "openvino"}
    if cfg.scheme in ("fp16", "bf16"):
        # Weights stored as fp16; the loader picks (fp16) or pins (bf16) the compute precision.
        save_ir(ov, model, out_xml, compress_to_fp16=True)
        return details
    nncf = require("nncf", "quantization for OpenVINO")
    ignored = nncf.IgnoredScope(names=list(exclude), validate=False) if exclude else None
    if cfg.scheme in ("int8-weight-only", "int4-weight-only"):
        kwargs: dict[str, Any] = {"ignored_scope": ignored}
        if cfg.scheme == "int8-weight-only":
            kwargs["mode"] = nncf.CompressWeightsMode.INT8_ASYM
        else:
            # Layers whose width the group size does not divide get the nearest group size that
            # does (ADJUST), else stay in NNCF's int8 backup precision, rather than failing.
            adjust = nncf.AdvancedCompressionParameters(
                group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST,
                min_adjusted_group_size=min(32, cfg.group_size))
            kwargs.update(mode=nncf.CompressWeightsMode.INT4_SYM, group_size=cfg.group_size, ratio=1.0,
                          all_layers=True, advanced_parameters=adjust)
            details["group_size"] = cfg.group_size
        try:
            with _quiet():
                model = nncf.compress_weights(model, **kwargs)
        except Exception as exc:  # e.g. a channel count not divisible by the group size
            from slimkit.errors import UsageError

            raise UsageError(f"NNCF weight compression failed: {str(exc).splitlines()[0][:300]}",
                             hint="try another --group-size (it must divide the layers' input channels)") from exc
        save_ir(ov, model, out_xml)
        return details
    dataset = nncf.Dataset([{k: v.numpy() for k, v in item.items()} for item in calibration])
    smooth = transformer if cfg.smooth_quant is None else cfg.smooth_quant
    with _quiet():
        model = nncf.quantize(
            model, dataset, subset_size=len(calibration), fast_bias_correction=True,
            model_type=nncf.ModelType.TRANSFORMER if transformer else None, ignored_scope=ignored,
            advanced_parameters=_advanced(cfg, transformer),
        )
    details.update({"model_type": "transformer" if transformer else "default", "smooth_quant": smooth,
                    "bias_correction": cfg.bias_correction, "calibration": cfg.calibration or "nncf-default",
                    "samples": len(calibration)})
    save_ir(ov, model, out_xml)
    return details
