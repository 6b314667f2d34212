"""``slimkit quantize``: quantize a task's model for one target and measure it against float there."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.task import Task
from slimkit.errors import UsageError
from slimkit.pipeline import Progress, Recipe, as_names, check_targets, check_threads, refusal_leaves_no_folder
from slimkit.pipeline.result import Result
from slimkit.pipeline.select import check_objective
from slimkit.pipeline.skeleton import Naming, Run
from slimkit.tasks.user import MetricLike, resolve_task
from slimkit.techniques.quantize import QuantizeConfig, check, describe_engine


@refusal_leaves_no_folder
def quantize(
    task: str | Task | nn.Module = "digits-cnn",
    data: Any = None,
    target: str = "openvino",
    *,
    scheme: str = "int8-static",
    eval_data: Any = None,
    metric: MetricLike | None = None,
    out: str | Path = "runs/quantize",
    calibration: str | None = None,
    samples: int | None = None,
    max_drop: float | None = None,
    qat_epochs: int = 0,
    qat_lr: float = 1e-4,
    sensitivity: bool = False,
    group_size: int | None = None,
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
    objective: str = "latency",
) -> Result:
    """Quantize a model for ``target`` and measure it side by side with float.

    ``task`` is a task (name, ``file.py:function`` or :class:`Task`) or your own ``nn.Module``
    with ``data``: a DataLoader, a Dataset, a tokenized ``datasets.Dataset``, or any iterable of
    tensors, ``(inputs, target)`` tuples or dicts (labels under ``labels``). Positional inputs
    are named after ``forward()``'s arguments; ``data`` calibrates, ``eval_data`` (default: a
    fifth of ``data``, held out) measures. Without labels or ``metric`` the metric is the
    fidelity to the original model: top-1 agreement for logits, cosine similarity otherwise.

    Baseline: the float model on torch eager. Candidates: the float model on ``target`` and the
    quantized model on ``target`` (its ``float_reference``: a quantized model slower than float
    on the same target is noted and never the best). ``max_drop`` turns on the accuracy-aware
    mode (the most sensitive layers stay float until the drop is within it) and is the report's
    accuracy constraint (default: the task's budget, 1% of the baseline's metric unless the task
    sets one). Writes ``out/report.json``, ``out/report.md``, ``out/recipe.yaml`` and the
    artifacts under ``out/artifacts/``.

    Example:
        >>> import tempfile
        >>> r = quantize("digits-cnn", target="onnxruntime", scheme="int8-dynamic", out=tempfile.mkdtemp(),
        ...              quick=True)
        >>> [c.id for c in r.candidates]
        ['onnxruntime-fp32', 'onnxruntime-int8-dynamic']
    """
    if isinstance(data, str):  # quantize(task, scheme, target): the positional form before data existed
        scheme, data = data, None
    check_threads(threads)
    objective = check_objective(objective)
    exclude = as_names(exclude, "exclude")
    cfg = QuantizeConfig(scheme, target, calibration=calibration, samples=300 if samples is None else samples,
                         per_channel=per_channel, group_size=128 if group_size is None else group_size,
                         smooth_quant=smooth_quant, bias_correction=bias_correction,
                         outlier_weight_only=outlier_weight_only, exclude=tuple(exclude), max_drop=max_drop,
                         qat_epochs=qat_epochs, qat_lr=qat_lr, sensitivity=sensitivity)
    check(scheme, target, calibration, qat=qat_epochs > 0, config=cfg)  # before any work: a clear error, exit 2
    # Given at their default value they still changed nothing on a scheme that does not read them.
    cfg.refuse_unused({name for name, value in (("samples", samples), ("group_size", group_size)) if value is not None})
    why_not = check_targets([target])[0][1]
    if why_not is not None:
        raise UsageError(f"target '{target}' is not available here: {why_not}", hint="run `slimkit list`")
    task = resolve_task(task, data, eval_data=eval_data, metric=metric, seed=seed, needs_data="quantization")
    run = Run.open("quantize", task, out, threads=threads, quick=quick, seed=seed, progress=progress)
    naming = Naming(reference=lambda t: f"{t}-fp32", candidate=lambda t: f"{t}-{scheme}",
                    reference_noun="the float model", candidate_noun=f"the {scheme} model")
    report = run.recipe(Recipe((cfg,)), [target], naming=naming, model=model)
    result = run.results[naming.candidate(target)]["quantize"]
    report.extra["quantization"] = {"scheme": scheme, "target": target, "engine": describe_engine(result.config),
                                    "float_layers": result.float_layers, "details": result.details}
    if result.sensitivity:
        report.extra["sensitivity"] = result.sensitivity
    report = run.finish(max_drop, objective=objective)
    return Result.of(report, run.out, model if model is not None else run.task.build_model())
