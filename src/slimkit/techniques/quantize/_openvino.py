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
from slimkit.techniques.quantize._outliers import THRESHOLD
from slimkit.techniques.quantize._ov_nodes import _LAYOUT, _constant_behind, _is_constant

# Ops NNCF puts int8 weights on; these are the "layers" of sensitivity and float fallback.
_LAYER_OPS = ("Convolution", "GroupConvolution", "MatMul", "ConvolutionBackpropData")
# The CPU plugin quantizes the input of an int8-weight matmul per token in groups of this many
# channels at run time (its own default is 32). On MiniLM's outlier layers smaller groups keep a
# little more accuracy and cost latency over all-static int8: this size keeps nearly all of the
# accuracy of 32 at a fraction of its extra latency.
DYNAMIC_GROUP = 64


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


def openvino_layer_weights(xml: Path) -> dict[str, Any]:
    """``{op name: weight array}`` of the quantizable ops of a float IR that read a constant (through
    the Convert/Reshape/Transpose OpenVINO puts in front of it)."""
    ov = require("openvino")
    return {name: c.get_data() for name, c in _layer_constants(ov.Core().read_model(str(xml)), _LAYOUT)}


def weight_element_types(model: Any) -> dict[str, str]:
    """``{op name: element type of its constant weight}`` ("u4", "u8", "f32"...) of a compressed model."""
    return {name: c.get_element_type().get_type_name() for name, c in _layer_constants(model, _DECOMPRESSION)}


# Weight decompression: Constant(u4/u8) -> Convert -> [Subtract zero point] -> Multiply scale -> [Reshape]
_DECOMPRESSION = (*_LAYOUT, "Subtract", "Multiply")


def _layer_constants(model: Any, through: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(op name, the Constant behind its weight input) of the quantizable ops and embedding Gathers."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() not in _LAYER_OPS and op.get_type_name() != "Gather":
            continue
        for port in op.inputs():
            node = _constant_behind(port.get_source_output().get_node(), through)
            if node is not None:
                found.append((op.get_friendly_name(), node))
                break
    return found


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
                transformer: bool, exclude: Sequence[str] = (),
                outlier_scores: dict[str, float] | None = None) -> dict[str, Any]:
    """Quantize or compress ``float_xml`` per ``cfg`` into ``out_xml``; returns what was done.

    ``outlier_scores``: the per-layer scores of an earlier call on the same IR and calibration
    data (``details["outliers"]["scores"]``), so repeated builds score the activations once.
    """
    ov = require("openvino", "the openvino target")
    model = ov.Core().read_model(str(float_xml))
    details: dict[str, Any] = {"engine": "openvino"}
    if cfg.scheme in ("fp16", "bf16"):
        # Weights stored as fp16; the loader picks (fp16) or pins (bf16) the compute precision.
        save_ir(ov, model, out_xml, compress_to_fp16=True)
        return details
    nncf = require("nncf", "quantization for OpenVINO")
    if cfg.scheme in ("int8-weight-only", "int4-weight-only"):
        model = _compress_weights(nncf, model, cfg, exclude, details)
    else:
        model = _quantize_int8(nncf, model, float_xml, cfg, calibration, transformer, exclude, outlier_scores,
                               details)
    save_ir(ov, model, out_xml)
    return details


def _compress_weights(nncf: Any, model: Any, cfg: QuantizeConfig, exclude: Sequence[str],
                      details: dict[str, Any]) -> Any:
    """Weight-only int8 or int4 (NNCF weight compression); activations stay float."""
    ignored = nncf.IgnoredScope(names=list(exclude), validate=False) if exclude else None
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
    if cfg.scheme == "int4-weight-only":
        _record_int4(model, details)
    return model


def _record_int4(model: Any, details: dict[str, Any]) -> None:
    # NNCF keeps some layers in its int8 backup precision (convolutions, widths no group
    # size divides): the report names them instead of calling the whole model int4.
    kinds = weight_element_types(model)
    details["int8_backup_layers"] = sorted(n for n, t in kinds.items() if t in ("u8", "i8"))
    details["int4_layers"] = sum(t in ("u4", "i4") for t in kinds.values())
    # ADJUST gives a layer whose width the asked group size does not divide a smaller one:
    # the report gives the sizes the int4 weights really have (out, groups, group size).
    used = sorted({c.get_shape()[-1] for _, c in _layer_constants(model, _DECOMPRESSION)
                   if c.get_element_type().get_type_name() in ("u4", "i4") and len(c.get_shape()) == 3})
    details["group_sizes_used"] = used


def _quantize_int8(nncf: Any, model: Any, float_xml: Path, cfg: QuantizeConfig, calibration: Sequence[Inputs],
                   transformer: bool, exclude: Sequence[str], outlier_scores: dict[str, float] | None,
                   details: dict[str, Any]) -> Any:
    """Static int8 (NNCF post-training quantization), outlier layers weight-only, excluded ones float."""
    ignored = nncf.IgnoredScope(names=list(exclude), validate=False) if exclude else None
    dataset = nncf.Dataset([{k: v.numpy() for k, v in item.items()} for item in calibration])
    smooth = transformer if cfg.smooth_quant is None else cfg.smooth_quant
    outliers = transformer if cfg.outlier_weight_only is None else cfg.outlier_weight_only
    weight_only: list[str] = []
    if outliers:
        model, weight_only, scores = _outlier_layers_weight_only(nncf, model, float_xml, calibration, exclude,
                                                                 outlier_scores)
        details["outliers"] = {"statistic": "p90 over input channels of max|x| / p99|x| over calibration tokens",
                               "threshold": THRESHOLD, "weight_only_int8": weight_only,
                               "scores": scores}
    if weight_only:
        ignored = nncf.IgnoredScope(names=[*exclude, *weight_only], validate=False)
        details["outliers"]["dynamic_quantization_group_size"] = DYNAMIC_GROUP
    with _quiet():
        model = nncf.quantize(
            model, dataset, subset_size=len(calibration), fast_bias_correction=True,
            model_type=nncf.ModelType.TRANSFORMER if transformer else None, ignored_scope=ignored,
            advanced_parameters=_advanced(cfg, transformer),
        )
    details.update({"model_type": "transformer" if transformer else "default", "smooth_quant": smooth,
                    "bias_correction": cfg.bias_correction, "calibration": cfg.calibration or "nncf-default",
                    "samples": len(calibration), "outlier_weight_only": outliers,
                    # Which layer got which treatment, by the names --exclude takes.
                    "layers": {"int8": [n for n, _ in openvino_layers(float_xml)
                                        if n not in exclude and n not in weight_only],
                               "weight_only_int8": weight_only, "float": list(exclude)}})
    if weight_only:
        # Read by OpenVINO's compile_model like a config key (an explicit one still wins).
        model.set_rt_info(str(DYNAMIC_GROUP), ["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"])
    return model


def _outlier_layers_weight_only(nncf: Any, model: Any, float_xml: Path, calibration: Sequence[Inputs],
                                exclude: Sequence[str], scores: dict[str, float] | None = None,
                                ) -> tuple[Any, list[str], dict[str, float]]:
    """Give the MatMuls whose inputs carry token-sparse outliers int8 weights (per output channel,
    symmetric) and no activation quantizer (OpenVINO's CPU plugin quantizes such a matmul's input
    per token at run time); returns the model, those layers and every score.

    Done *before* ``nncf.quantize``, with the layers also in its ignored scope: NNCF's
    SmoothQuant does not honour the ignored scope, and on a float weight it would still fold its
    per-channel scale in (a Multiply on the activation, spikes moved into the weights), which
    costs the int8 weights their precision (on MiniLM, visibly in the worst sentence's cosine).
    A compressed weight is no longer a plain constant, so SmoothQuant and MinMax leave it alone.
    """
    from slimkit.techniques.quantize._outliers import flag_outlier_layers, matmul_input_scores

    if scores is None:
        scores = matmul_input_scores(float_xml, calibration)
    chosen = [n for n in flag_outlier_layers(scores) if n not in exclude]
    if chosen:
        keep = set(chosen)
        others = [n for n, _ in openvino_layers(float_xml, weighted_only=True) if n not in keep]
        with _quiet():
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM,
                                          ignored_scope=nncf.IgnoredScope(names=others, validate=False))
    return model, chosen, scores


def int8_embedding_tables(xml: Path) -> list[str]:
    """Store the IR's float embedding tables (constant inputs of Gather) as int8, in place;
    returns the Gather ops whose tables changed.

    Quantization-aware training exports its Linear weights already on the int8 grid, but the
    embedding tables are read by Gather, not by a fake-quantized layer, so they were left in
    fp32, most of a pruned MiniLM's IR (NNCF's post-training int8 stores them in int8 too).
    Asymmetric per-row int8 via NNCF's weight compression; every other weighted op is in its
    ignored scope, so a layer the user kept float stays float. On that model the accuracy cost,
    measured through OpenVINO, was negligible.
    """
    ov = require("openvino", "the openvino target")
    nncf = require("nncf", "quantization for OpenVINO")
    model = ov.Core().read_model(str(xml))
    tables, others = [], []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        table = op.input_value(0) if op.inputs() else None  # Parameters and Constants have no inputs
        if kind == "Gather" and table is not None and table.get_node().get_type_name() == "Constant" \
                and table.get_element_type().is_real() and len(table.get_partial_shape()) == 2:
            tables.append(op.get_friendly_name())  # a float (rows, width) table; int8 ones read a Convert
        elif kind in _LAYER_OPS or kind == "Gather":
            others.append(op.get_friendly_name())
    if not tables:
        return []
    with _quiet():
        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                      ignored_scope=nncf.IgnoredScope(names=others, validate=False))
    save_ir(ov, model, xml)
    return tables
