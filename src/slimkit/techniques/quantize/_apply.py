"""Quantize a model for one target: pick the engine, calibrate, fall back to float where needed."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.measure.measure import evaluate_deployed
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._backends import Backend
from slimkit.techniques.quantize._calib import calibration_items, is_transformer
from slimkit.techniques.quantize._config import QuantizeConfig
from slimkit.techniques.quantize._registry import backend_class, export_float
from slimkit.techniques.quantize._support import check

Say = Callable[[str], None]
SENSITIVITY_ITEMS = 128  # evaluation items per sensitivity trial: enough to rank layers, quick to run


@dataclass
class QuantizeResult:
    """The quantized artifact loaded on its target, and how it was made."""

    deployed: Deployed
    config: QuantizeConfig
    float_layers: list[str] = field(default_factory=list)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def quantize_for_target(model: nn.Module, task: Task, cfg: QuantizeConfig, workdir: Path, threads: int, *,
                        float_artifact: Path | None = None, reference_metric: float | None = None,
                        with_sensitivity: bool = False, say: Say = lambda _m: None) -> QuantizeResult:
    """Quantize ``model`` per ``cfg``; the artifact is written under ``workdir`` and loaded on ``cfg.target``.

    ``float_artifact`` is the float model already exported for the target (else exported here);
    ``reference_metric`` its metric on the evaluation set (else measured here, when needed).

    Example:
        >>> import tempfile, pathlib, torch
        >>> from slimkit.tasks import load_task
        >>> task = load_task("digits-cnn")
        >>> r = quantize_for_target(task.build_model(), task, QuantizeConfig("int8-static", "onnxruntime",
        ...                         samples=32), pathlib.Path(tempfile.mkdtemp()), 1)
        >>> r.deployed.run(task.example_inputs).shape
        torch.Size([1, 10])
    """
    check(cfg.scheme, cfg.target, cfg.calibration, qat=cfg.qat_epochs > 0, config=cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    if cfg.target == "torch":
        return _quantize_torch(model, task, cfg, workdir, threads, with_sensitivity, say)
    items = _calibration(task, cfg.samples)
    transformer = is_transformer(task.example_inputs, model)
    if cfg.qat_epochs:
        return _qat(model, task, cfg, workdir, threads, items, transformer, say)
    float_artifact = float_artifact or export_float(model, task.example_inputs, cfg.target, workdir, cfg.scheme)
    backend = backend_class(cfg.target, cfg.scheme)(cfg, float_artifact, workdir, threads, task.example_inputs,
                                                    items, transformer)
    backend.know_modules(model)
    exclude = backend.resolve(cfg.exclude)
    rows: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    if with_sensitivity or cfg.max_drop is not None:
        rows = _sensitivity_rows(backend, task, details, say)
    if cfg.max_drop is not None:
        exclude = _keep_sensitive_in_float(backend, task, cfg.max_drop, reference_metric, rows, exclude, details,
                                           say)
    deployed = backend.build(exclude, "model", pick_precision=True)
    _record(backend, deployed, exclude, details, workdir, say)
    return QuantizeResult(deployed, cfg, exclude, rows, details)


def _quantize_torch(model: nn.Module, task: Task, cfg: QuantizeConfig, workdir: Path, threads: int,
                    with_sensitivity: bool, say: Say) -> QuantizeResult:
    """Eager torch: torchao's int8/int4 on the Linear layers, or a cast to fp16/bf16."""
    if cfg.max_drop is not None or cfg.exclude or with_sensitivity:
        raise UsageError("per-layer sensitivity, --max-drop and excluded layers are offered on openvino "
                         "and onnxruntime, not on torch", hint="use --target openvino")
    from slimkit.techniques.quantize._torch import deploy_torch, quantize_torch

    # torchao quantizes Linear layers only: the rest keep float weights, and the report says which.
    weighted = [name for name, m in model.named_modules()
                if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.dim() > 1
                and not isinstance(m, nn.Linear)] if cfg.scheme.startswith("int") else []
    qmodel = quantize_torch(model, cfg)
    deployed = deploy_torch(qmodel, task.example_inputs, workdir / "model.safetensors", threads, cfg.scheme)
    details: dict[str, Any] = {"engine": "torchao" if cfg.scheme.startswith("int") else "cast",
                               "float_layers": weighted}
    if weighted:
        say(f"{len(weighted)} layer(s) that are not Linear keep float weights (torchao quantizes Linear only)")
    deployed.details.update({"quantization": details})
    return QuantizeResult(deployed, cfg, weighted, details=details)


def _calibration(task: Task, samples: int) -> list[Inputs]:
    """``samples`` calibration items, topped up from the training inputs where the calibration set is smaller."""
    items = calibration_items(task.calibration_data, samples)
    if len(items) < samples:
        # Calibration needs inputs only, so a small calibration set (minilm ships 64 sentences) is
        # topped up from the training inputs: on MiniLM the extra samples raised the worst
        # sentence's cosine after int8.
        items += calibration_items(task.train_data, samples - len(items))
    return items


def _sensitivity_rows(backend: Backend, task: Task, details: dict[str, Any], say: Say) -> list[dict[str, Any]]:
    """Each layer's drop when it alone is quantized, on a subset of the evaluation set."""
    from slimkit.techniques.quantize._sensitivity import eval_subset, sensitivity

    subset = eval_subset(task, SENSITIVITY_ITEMS)
    rows: list[dict[str, Any]] = list(sensitivity(backend, subset, say))
    # The table's metrics are on this subset, not the whole evaluation set the report's rows use.
    details["sensitivity_items"] = getattr(subset.eval_data, "num_items", None)
    return rows


def _keep_sensitive_in_float(backend: Backend, task: Task, max_drop: float, reference_metric: float | None,
                             rows: list[dict[str, Any]], exclude: list[str], details: dict[str, Any],
                             say: Say) -> list[str]:
    """Accuracy-aware: the layers to keep in float, most sensitive first, until the drop is within ``max_drop``."""
    from slimkit.techniques.quantize._accuracy_aware import keep_sensitive_in_float

    if reference_metric is None:
        reference_metric, _ = evaluate_deployed(backend.load_float(), task)
    fb = keep_sensitive_in_float(backend, task, reference_metric, max_drop,
                                 [str(r["layer"]) for r in rows], exclude, say)
    details["accuracy_aware"] = {"max_drop": max_drop, "met": fb.met, "trials": fb.trials}
    if not fb.met:
        say(f"accuracy-aware: the drop stays above {max_drop} even with every layer in float")
    return fb.float_layers


def _record(backend: Backend, deployed: Deployed, exclude: list[str], details: dict[str, Any], workdir: Path,
            say: Say) -> None:
    """Put what the build did into ``details`` (and the deployed model's), and drop the trial builds."""
    weight_only = backend.details.get("outliers", {}).get("weight_only_int8", [])
    if weight_only:
        say(f"{len(weight_only)} layer(s) with token-sparse input outliers: int8 weights only, "
            "no static activation range")
    for stale in workdir.glob("sens*"):
        stale.unlink()
    for stale in workdir.glob("aa*"):
        stale.unlink()
    details.update(backend.details)
    details["float_layers"] = exclude
    origins = dict(backend.layers()) if exclude else {}
    details["float_layer_modules"] = {layer: origins[layer] for layer in exclude if origins.get(layer)}
    deployed.details.update({"quantization": details})


def _qat(model: nn.Module, task: Task, cfg: QuantizeConfig, workdir: Path, threads: int,
         items: list[Inputs], transformer: bool, say: Say) -> QuantizeResult:
    """Quantization-aware training, then the fake-quantized model exported to and loaded on the target."""
    from slimkit.core.task import run_model
    from slimkit.export.parity import compare
    from slimkit.techniques.quantize._qat import SMOOTH_ALPHA, qat_model

    _check_qat_exclude(model, cfg.exclude)
    smooth, attention, weight_max = _qat_plan(task, cfg, transformer, say)
    qmodel, info = qat_model(model, task, items, cfg.qat_epochs, cfg.qat_lr, exclude=cfg.exclude,
                             per_channel=cfg.per_channel, smooth=SMOOTH_ALPHA if smooth else None,
                             attention=attention, weight_max=weight_max, progress=say)
    qmodel.requires_grad_(False)  # else exporters meet the training variant of fake-quantize
    with torch.no_grad():
        reference = run_model(qmodel, task.example_inputs)
    if cfg.target == "openvino":
        deployed = _deploy_qat_openvino(qmodel, task, workdir, threads, info, say)
    else:
        from slimkit.techniques.quantize._qat_onnxruntime import deploy_qat_onnxruntime

        deployed = deploy_qat_onnxruntime(qmodel, task, cfg, workdir, threads, items, transformer, info, say)
    parity = compare(reference, deployed.run(task.example_inputs))
    info["export_parity_vs_fake_quant"] = parity.to_dict()
    for stale in workdir.glob(".ir*"):
        shutil.rmtree(stale, ignore_errors=True)
    deployed.details.update({"quantization": {"engine": "qat", **info}})
    return QuantizeResult(deployed, cfg, list(cfg.exclude), [], {"engine": "qat", "qat": info})


def _check_qat_exclude(model: nn.Module, exclude: Sequence[str]) -> None:
    """QAT keeps torch modules in float: each excluded name must be (inside) one of the model's."""
    from slimkit.techniques.quantize._origins import in_module

    modules = [name for name, _ in model.named_modules() if name]
    unknown = [e for e in exclude if not any(in_module(m, e) for m in modules)]
    if unknown:
        raise UsageError(f"quantization-aware training keeps torch modules in float, and the model has no module "
                         f"named {', '.join(repr(u) for u in unknown)} (it has e.g. {', '.join(modules[:4])})",
                         hint="name modules as model.named_modules() lists them")


def _qat_plan(task: Task, cfg: QuantizeConfig, transformer: bool, say: Say) -> tuple[bool, bool, int]:
    """Whether to smooth inputs and quantize attention, and the largest weight code; says the plan."""
    from slimkit.measure.env import int8_dot_saturates

    # Smoothing puts a division into the graph, which the OpenVINO export keeps; the ONNX Runtime
    # path hands plain weights to its own quantizer, which would drop it.
    smooth = (transformer if cfg.smooth_quant is None else cfg.smooth_quant) and cfg.target == "openvino"
    # Int8 query/key outputs only pay where the fake-quantized graph itself is deployed (OpenVINO);
    # ONNX Runtime re-quantizes the stripped weights with its own scheme.
    attention = transformer and cfg.target == "openvino"
    # Where the CPU's int8 dot product saturates, the weights live on a 7-bit grid from the start,
    # so the model trains against the grid it will run on (with full-range weights the deployed
    # OpenVINO model drifted from the fake-quantized one on such a CPU; on the 7-bit grid they
    # agree). ONNX Runtime is given the same grid (its reduce_range, see quantize_onnx).
    weight_max = 64 if int8_dot_saturates() else 127
    weights = ("per-channel" if cfg.per_channel else "per-tensor") + (", 7-bit" if weight_max < 127 else "")
    data = "the task's transfer set" if task.transfer_data is not None else "the training set"
    say(f"quantization-aware training: {cfg.qat_epochs} epoch(s) on {data} with fake int8 quantization "
        f"({weights} weights{', inputs smoothed' if smooth else ''}"
        f"{', int8 attention scores' if attention else ''})")
    return smooth, attention, weight_max


def _deploy_qat_openvino(qmodel: nn.Module, task: Task, workdir: Path, threads: int, info: dict[str, object],
                         say: Say) -> Deployed:
    """The fake-quantized model as an int8 OpenVINO IR, loaded on the target."""
    from slimkit.export.openvino import torch_to_openvino
    from slimkit.targets.openvino import load_ir
    from slimkit.techniques.quantize._openvino import int8_embedding_tables

    # The fake-quantize ops become OpenVINO FakeQuantize: int8 kernels, int8 weights on disk;
    # embedding tables (read by Gather, not by a wrapped layer) are made int8 after export.
    path = workdir / "model.xml"
    torch_to_openvino(qmodel, task.example_inputs, path, check=False)
    try:
        info["int8_embedding_tables"] = int8_embedding_tables(path)
    except Exception as exc:  # noqa: BLE001 - a size saving: the IR (written atomically) stays valid
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        info["int8_embedding_tables"] = f"left in fp32: NNCF weight compression failed ({reason})"
        say(f"embedding tables left in fp32 (NNCF weight compression failed: {reason})")
    return load_ir(path, threads, task.example_inputs)
