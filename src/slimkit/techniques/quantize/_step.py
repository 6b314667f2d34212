"""Quantize as a recipe step and as search dimensions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from slimkit.core.config import StepConfig
from slimkit.core.technique import Dimension, StepState, Technique
from slimkit.techniques.quantize._apply import QuantizeResult, quantize_for_target
from slimkit.techniques.quantize._config import QuantizeConfig
from slimkit.techniques.quantize._support import check, support


def describe_engine(config: QuantizeConfig) -> str:
    """The engine that does the work, in words, for the report and the progress line."""
    if config.qat_epochs:
        return ("fake int8 quantization fine-tuned by the training engine, exported as FakeQuantize"
                if config.target == "openvino" else
                "fake int8 quantization fine-tuned by the training engine, then the QDQ quantizer")
    return support(config.scheme, config.target).engine


def notes(result: QuantizeResult) -> list[str]:
    """What a reader of the result table should know about how the model was quantized."""
    found = []
    if result.float_layers:
        modules = result.details.get("float_layer_modules", {})
        named = [f"{modules[layer]} ({layer})" if layer in modules else layer for layer in result.float_layers]
        found.append(f"{len(named)} layer(s) kept in float: {', '.join(named)}")
    backup = result.details.get("int8_backup_layers", [])
    if backup:
        found.append(f"{len(backup)} layer(s) in int8, NNCF's backup precision for layers int4 does not cover "
                     f"(convolutions, widths no group size divides); {result.details.get('int4_layers', 0)} in int4")
    weight_only = result.details.get("outliers", {}).get("weight_only_int8", [])
    if weight_only:
        found.append(f"{len(weight_only)} layer(s) with token outliers in their inputs: int8 weights only")
    aa = result.details.get("accuracy_aware")
    if aa and not aa["met"]:
        found.append(f"accuracy-aware mode could not bring the drop within {result.config.max_drop}")
    return found


def _retarget(config: QuantizeConfig, target: str) -> QuantizeConfig:
    # Replacing the target runs the config's own checks again for that target.
    return config if config.target == target else dataclasses.replace(config, target=target)


def for_target(config: QuantizeConfig, target: str) -> QuantizeConfig:
    """The step on ``target``: the scheme must be offered there, with the options it takes."""
    config = _retarget(config, target)
    check(config.scheme, target, config.calibration, qat=config.qat_epochs > 0, config=config)
    return config


def apply(state: StepState, config: QuantizeConfig) -> StepState:
    """Quantize for the recipe's target; the artifact becomes the state's deployed model
    (quantize_for_target checks the combination, as ``for_target`` does before a run)."""
    config = _retarget(config, state.target)
    say = state.progress or (lambda _m: None)
    say(f"quantizing: {config.scheme} on {config.target} ({describe_engine(config)})")
    result = quantize_for_target(state.model, state.task, config, state.workdir, state.threads,
                                 float_artifact=state.float_artifact, reference_metric=state.reference_metric,
                                 with_sensitivity=config.sensitivity, say=say)
    state.deployed = result.deployed
    state.info["quantize"] = {"scheme": config.scheme, "float_layers": result.float_layers, **result.details,
                              "notes": notes(result)}
    state.results["quantize"] = result
    return state


def steps(params: Mapping[str, Any], settings: Mapping[str, Any]) -> list[StepConfig]:
    """Quantize for the trial's target with the drawn scheme ("none": stay float)."""
    scheme = params.get("quant_scheme", "none")
    if not scheme or scheme == "none":
        return []
    data: dict[str, Any] = {"scheme": scheme, "target": params.get("target", "torch")}
    if "calibration" in params and scheme == "int8-static":  # the only scheme that calibrates
        data["calibration"] = params["calibration"]
    return [QuantizeConfig.from_dict({"type": "quantize", "data": data})]


TECHNIQUE = Technique(
    "quantize", QuantizeConfig, apply,
    "int8 static/dynamic/weight-only, int4 weight-only, fp16/bf16, QAT, sensitivity, accuracy-aware "
    "float fallback (NNCF, onnxruntime.quantization, torchao)",
    dimensions=(
        Dimension("quant_scheme", "quantization scheme ('none': float)"),
        Dimension("calibration", "int8-static calibration (minmax, percentile, entropy, mse)"),
    ),
    steps=steps,
    order=40,
    changes_model=False,
    for_target=for_target,
)
