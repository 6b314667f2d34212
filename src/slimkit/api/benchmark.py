"""``slimkit bench``: the same model on several targets, side by side in one run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import nn

from slimkit.api._common import (
    Progress,
    check_budgets,
    check_targets,
    check_threads,
    claim_out,
    command_line,
    default_threads,
    drop_stale_artifacts,
    finalize,
    fresh_dir,
    measure_model,
    refusal_leaves_no_folder,
    target_names,
)
from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task
from slimkit.measure.env import environment
from slimkit.report.schema import Report
from slimkit.tasks import load_task

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

    Writes ``out/report.json``, ``out/report.md`` and each target's artifact under
    ``out/artifacts/<target>/``. Unavailable targets are skipped and listed in the report.

    Example:
        >>> import tempfile
        >>> report = benchmark("digits-cnn", ["torch"], out=tempfile.mkdtemp(), quick=True)
        >>> report.baseline.measurement.metric > 90
        True
    """
    check_threads(threads)
    targets = target_names(targets)
    threads = threads or default_threads()
    say = progress or (lambda _msg: None)
    status = check_targets(targets)  # unknown names fail here, before any work
    check_budgets(max_drop=max_drop)
    out_dir = claim_out(out, "bench")
    task_obj = load_task(task, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_model = model if model is not None else task_obj.build_model()
    max_drop = task_obj.tolerance if max_drop is None else max_drop

    say(f"measuring the baseline (torch eager, {threads} threads)")
    baseline = measure_model(base_model, task_obj, "torch", fresh_dir(out_dir / "artifacts" / "torch"),
                             threads, entry_id="baseline", recipe=[], quick=quick, out=out_dir)
    report = Report(task_obj.name, command_line("benchmark"), environment(threads), baseline)
    for name, why_not in status:
        if name == "torch":
            continue
        if why_not is not None:
            say(f"skipping {name}: {why_not}")
            report.skipped.append({"target": name, "reason": why_not})
            continue
        say(f"exporting and measuring on {name}")
        report.candidates.append(measure_model(
            base_model, task_obj, name, fresh_dir(out_dir / "artifacts" / name), threads,
            entry_id=name, recipe=[], quick=quick, out=out_dir))
    finalize(report, max_drop)
    atomic_write_json(out_dir / "recipe.json", {"command": "bench", "task": task_obj.name,
                                                "targets": list(targets), "threads": threads,
                                                "max_drop": max_drop, "seed": seed, "steps": []})
    drop_stale_artifacts(report, out_dir)
    report.write(out_dir)
    return report
