"""``slimkit bench``: the same model on several targets, side by side in one run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.task import Task
from slimkit.pipeline import (
    Progress,
    Recipe,
    check_budgets,
    check_targets,
    check_threads,
    refusal_leaves_no_folder,
    target_names,
)
from slimkit.pipeline.result import Result
from slimkit.pipeline.select import check_objective
from slimkit.pipeline.skeleton import Run
from slimkit.tasks.user import MetricLike, resolve_task

DEFAULT_TARGETS = ("torch", "onnxruntime", "openvino")


@refusal_leaves_no_folder
def benchmark(
    task: str | Task | nn.Module = "digits-cnn",
    data: Any = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    *,
    eval_data: Any = None,
    metric: MetricLike | None = None,
    out: str | Path = "runs/bench",
    threads: int | None = None,
    max_drop: float | None = None,
    model: nn.Module | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    objective: str = "latency",
) -> Result:
    """Measure a model on each target; the baseline is always torch eager.

    ``task`` is a task (name, ``file.py:function`` or :class:`Task`) or your own ``nn.Module``
    with ``data`` (its inputs, with or without labels; see :func:`slimkit.quantize`).

    Writes ``out/report.json``, ``out/report.md``, ``out/recipe.yaml`` and each target's artifact under
    ``out/artifacts/<target>/``. Unavailable targets are skipped and listed in the report.

    Example:
        >>> import tempfile
        >>> report = benchmark("digits-cnn", targets=["torch"], out=tempfile.mkdtemp(), quick=True)
        >>> report.baseline.measurement.metric > 90
        True
    """
    if _names(data):  # benchmark(task, [targets]): the positional form before data existed
        targets, data = data, None
    check_threads(threads)
    objective = check_objective(objective)
    targets = target_names(targets)
    check_targets(targets)  # unknown names fail here, before any work
    check_budgets(max_drop=max_drop)
    task = resolve_task(task, data, eval_data=eval_data, metric=metric, seed=seed, needs_data="benchmark")
    run = Run.open("bench", task, out, threads=threads, quick=quick, seed=seed, progress=progress,
                   api_name="benchmark")
    run.recipe(Recipe(), targets, model=model)
    report = run.finish(max_drop, objective=objective)
    return Result.of(report, run.out, model if model is not None else run.task.build_model())


def _names(value: Any) -> bool:
    """Target names where data was expected (a string, or a list of them)."""
    return isinstance(value, str) or (isinstance(value, (list, tuple)) and bool(value)
                                      and all(isinstance(v, str) for v in value))
