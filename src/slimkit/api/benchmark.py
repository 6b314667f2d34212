"""``slimkit bench``: the same model on several targets, side by side in one run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
from slimkit.pipeline.skeleton import Run
from slimkit.report.schema import Report

DEFAULT_TARGETS = ("torch", "onnxruntime", "openvino")


@refusal_leaves_no_folder
def benchmark(
    task: str | Task = "digits-cnn",
    targets: Sequence[str] = DEFAULT_TARGETS,
    *,
    out: str | Path = "runs/bench",
    threads: int | None = None,
    max_drop: float | None = None,
    model: nn.Module | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Measure a task's model on each target; the baseline is always torch eager.

    Writes ``out/report.json``, ``out/report.md``, ``out/recipe.yaml`` and each target's artifact under
    ``out/artifacts/<target>/``. Unavailable targets are skipped and listed in the report.

    Example:
        >>> import tempfile
        >>> report = benchmark("digits-cnn", ["torch"], out=tempfile.mkdtemp(), quick=True)
        >>> report.baseline.measurement.metric > 90
        True
    """
    check_threads(threads)
    targets = target_names(targets)
    check_targets(targets)  # unknown names fail here, before any work
    check_budgets(max_drop=max_drop)
    run = Run.open("bench", task, out, threads=threads, quick=quick, seed=seed, progress=progress,
                   api_name="benchmark")
    run.recipe(Recipe(), targets, model=model)
    return run.finish(run.task.tolerance if max_drop is None else max_drop)
