"""``slimkit quantize``: quantize a task's model for one target and measure it against float there."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.pipeline import Progress, Recipe, as_names, check_targets, check_threads, refusal_leaves_no_folder
from slimkit.pipeline.skeleton import Naming, Run
from slimkit.report.schema import Report
from slimkit.techniques.quantize import QuantizeConfig, check, describe_engine


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
    ``out/report.md``, ``out/recipe.yaml`` and the artifacts under ``out/artifacts/``.

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
                         qat_epochs=qat_epochs, qat_lr=qat_lr, sensitivity=sensitivity)
    check(scheme, target, calibration, qat=qat_epochs > 0, config=cfg)  # before any work: a clear error, exit 2
    why_not = check_targets([target])[0][1]
    if why_not is not None:
        raise UsageError(f"target '{target}' is not available here: {why_not}", hint="run `slimkit list`")
    run = Run.open("quantize", task, out, threads=threads, quick=quick, seed=seed, progress=progress)
    naming = Naming(reference=lambda t: f"{t}-fp32", candidate=lambda t: f"{t}-{scheme}",
                    reference_noun="the float model", candidate_noun=f"the {scheme} model")
    report = run.recipe(Recipe((cfg,)), [target], naming=naming, model=model)
    result = run.results[naming.candidate(target)]["quantize"]
    report.extra["quantization"] = {"scheme": scheme, "target": target, "engine": describe_engine(result.config),
                                    "float_layers": result.float_layers, "details": result.details}
    if result.sensitivity:
        report.extra["sensitivity"] = result.sensitivity
    return run.finish(run.task.tolerance if max_drop is None else max_drop)
