"""``slimkit quantize``: quantize a task's model for one target and measure it against float there."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from slimkit.api._common import (
    Progress,
    as_names,
    check_threads,
    claim_out,
    command_line,
    default_threads,
    drop_stale_artifacts,
    finalize,
    fresh_dir,
    measure_entry,
    measure_model,
    refusal_leaves_no_folder,
)
from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.measure.env import environment
from slimkit.measure.memory import PeakMemory
from slimkit.report.schema import Report
from slimkit.tasks import load_task
from slimkit.techniques.quantize import QuantizeConfig, check, quantize_for_target, support

_FLOAT_FILE = {"openvino": "model.xml", "onnxruntime": "model.onnx"}


@refusal_leaves_no_folder
def quantize(
    task: str | Task = "digits-cnn",
    scheme: str = "int8-static",
    target: str = "openvino",
    *,
    out: str | Path = "runs/quantize",
    calibration: str | None = None,
    samples: int = 300,
    max_drop: float | None = None,
    qat_epochs: int = 0,
    qat_lr: float = 1e-4,
    sensitivity: bool = False,
    group_size: int = 128,
    per_channel: bool = True,
    smooth_quant: bool | None = None,
    bias_correction: bool = True,
    outlier_weight_only: bool | None = None,
    exclude: Sequence[str] = (),
    threads: int | None = None,
    quick: bool = False,
    seed: int = 0,
    model: nn.Module | None = None,
    progress: Progress | None = None,
) -> Report:
    """Quantize a task's model for ``target`` and measure it side by side with float.

    Baseline: the float model on torch eager. Candidates: the float model on ``target`` and the
    quantized model on ``target`` (its ``float_reference``: a quantized model slower than float
    on the same target is noted and never the best). ``max_drop`` turns on the accuracy-aware
    mode (the most sensitive layers stay float until the drop is within it) and is the report's
    accuracy constraint (default: the task's tolerance). Writes ``out/report.json``,
    ``out/report.md``, ``out/recipe.json`` and the artifacts under ``out/artifacts/``.

    Example:
        >>> import tempfile
        >>> r = quantize("digits-cnn", "int8-dynamic", "onnxruntime", out=tempfile.mkdtemp(), quick=True)
        >>> [c.id for c in r.candidates]
        ['onnxruntime-fp32', 'onnxruntime-int8-dynamic']
    """
    check_threads(threads)
    exclude = as_names(exclude, "exclude")
    cfg = QuantizeConfig(scheme, target, calibration=calibration, samples=samples, per_channel=per_channel,
                         group_size=group_size, smooth_quant=smooth_quant, bias_correction=bias_correction,
                         outlier_weight_only=outlier_weight_only, exclude=tuple(exclude), max_drop=max_drop,
                         qat_epochs=qat_epochs, qat_lr=qat_lr)
    check(scheme, target, calibration, qat=qat_epochs > 0)  # before any work: a clear error, exit 2
    if sensitivity and qat_epochs:
        raise UsageError("the per-layer sensitivity table is computed for post-training quantization, "
                         "not after quantization-aware training", hint="use --qat or --sensitivity, not both")
    from slimkit.api._common import check_targets

    why_not = check_targets([target])[0][1]
    if why_not is not None:
        raise UsageError(f"target '{target}' is not available here: {why_not}", hint="run `slimkit list`")
    out_dir = claim_out(out, "quantize")
    threads = threads or default_threads()
    say = progress or (lambda _msg: None)
    task_obj = load_task(task, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_model = model if model is not None else task_obj.build_model()

    say(f"measuring the baseline (torch eager, {threads} threads)")
    baseline = measure_model(base_model, task_obj, "torch", fresh_dir(out_dir / "artifacts" / "torch"), threads,
                             entry_id="baseline", recipe=[], quick=quick, out=out_dir)
    report = Report(task_obj.name, command_line("quantize"), environment(threads), baseline)
    float_entry, float_artifact = baseline, None
    if target != "torch":
        say(f"exporting and measuring the float model on {target}")
        float_dir = fresh_dir(out_dir / "artifacts" / target)
        float_entry = measure_model(base_model, task_obj, target, float_dir, threads, entry_id=f"{target}-fp32",
                                    recipe=[], quick=quick, out=out_dir)
        report.candidates.append(float_entry)
        float_artifact = float_dir / _FLOAT_FILE[target]
    engine = support(scheme, target).engine
    if qat_epochs:
        engine = ("fake int8 quantization fine-tuned by the training engine, exported as FakeQuantize"
                  if target == "openvino" else
                  "fake int8 quantization fine-tuned by the training engine, then the QDQ quantizer")
    say(f"quantizing: {scheme} on {target} ({engine})")
    with PeakMemory() as mem:
        result = quantize_for_target(base_model, task_obj, cfg, fresh_dir(out_dir / "artifacts" / f"{target}-{scheme}"),
                                     threads, float_artifact=float_artifact,
                                     reference_metric=float_entry.measurement.metric, with_sensitivity=sensitivity,
                                     say=say)
    say(f"measuring the {scheme} model on {target}")
    entry = measure_entry(result.deployed, task_obj, base_model, entry_id=f"{target}-{scheme}",
                          recipe=[cfg.to_dict()], quick=quick, out=out_dir, load_memory=mem.peak_increase)
    entry.float_reference = float_entry.id
    if result.float_layers:
        modules = result.details.get("float_layer_modules", {})
        named = [f"{modules[layer]} ({layer})" if layer in modules else layer for layer in result.float_layers]
        entry.notes.append(f"{len(named)} layer(s) kept in float: {', '.join(named)}")
    backup = result.details.get("int8_backup_layers", [])
    if backup:
        entry.notes.append(f"{len(backup)} layer(s) in int8, NNCF's backup precision for layers int4 does not "
                           f"cover (convolutions, widths no group size divides); {result.details.get('int4_layers', 0)}"
                           " in int4")
    weight_only = result.details.get("outliers", {}).get("weight_only_int8", [])
    if weight_only:
        entry.notes.append(f"{len(weight_only)} layer(s) with token outliers in their inputs: int8 weights only")
    aa = result.details.get("accuracy_aware")
    if aa and not aa["met"]:
        entry.notes.append(f"accuracy-aware mode could not bring the drop within {max_drop}")
    report.candidates.append(entry)
    report.extra["quantization"] = {"scheme": scheme, "target": target, "engine": engine,
                                    "float_layers": result.float_layers, "details": result.details}
    if result.sensitivity:
        report.extra["sensitivity"] = result.sensitivity
    finalize(report, task_obj.tolerance if max_drop is None else max_drop)
    atomic_write_json(out_dir / "recipe.json", {"command": "quantize", "task": task_obj.name, "target": target,
                                                "threads": threads, "max_drop": max_drop, "seed": seed,
                                                "steps": [cfg.to_dict()]})
    drop_stale_artifacts(report, out_dir)
    report.write(out_dir)
    return report
