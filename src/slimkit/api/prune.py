"""``slimkit.prune``: prune a task's model, recover it, and measure it on every target."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from slimkit.api._common import (
    Progress,
    check_targets,
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
    target_names,
)
from slimkit.api.benchmark import DEFAULT_TARGETS
from slimkit.core.files import atomic_write_json
from slimkit.core.task import Task, run_model
from slimkit.export.parity import compare
from slimkit.measure.env import environment
from slimkit.report.schema import Report
from slimkit.targets.base import dynamic_shapes
from slimkit.targets.torch_eager import TorchDeployed
from slimkit.tasks import load_task
from slimkit.techniques.prune import PruneConfig, PruneError, load_pruned, prune_model, save_pruned


@refusal_leaves_no_folder
def prune(
    task: str | Task = "digits-cnn",
    *,
    ratio: float = 0.5,
    structured: bool = True,
    criterion: str = "l2",
    recover_epochs: int = 0,
    recover: str = "finetune",
    config: PruneConfig | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    out: str | Path = "runs/prune",
    threads: int | None = None,
    max_drop: float | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
) -> Report:
    """Prune a task's model, recover it, save it, and measure it against the unpruned baseline.

    ``config`` overrides every pruning argument when given. Writes ``out/report.json``
    (baseline = the unpruned model on torch eager; candidates = the pruned model on torch and
    every other available target), ``out/report.md``, ``out/recipe.json`` and the pruned
    model in ``out/pruned/`` (reload it with :func:`slimkit.techniques.prune.load_pruned`).

    Example:
        >>> import tempfile
        >>> r = prune("digits-cnn", ratio=0.3, targets=["torch"], out=tempfile.mkdtemp(), quick=True)
        >>> r.extra["pruning"]["macs_reduction"] > 1.5
        True
    """
    check_threads(threads)
    targets = target_names(targets)
    cfg = config or PruneConfig(mode="structured" if structured else "unstructured", ratio=ratio,
                                criterion=criterion, recover_epochs=recover_epochs, recover=recover,  # type: ignore[arg-type]
                                seed=seed)
    threads = threads or default_threads()
    say = progress or (lambda _m: None)
    status = check_targets(["torch", *[t for t in targets if t != "torch"]])
    out_dir = claim_out(out, "prune")
    task_obj = load_task(task, seed=seed)
    max_drop = cfg.max_drop if max_drop is None else max_drop
    max_drop = task_obj.tolerance if max_drop is None else max_drop
    cfg = dataclasses.replace(cfg, max_drop=max_drop)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = task_obj.build_model()

    say(f"measuring the unpruned baseline (torch eager, {threads} threads)")
    baseline = measure_model(base, task_obj, "torch", fresh_dir(out_dir / "artifacts" / "torch"), threads,
                             entry_id="baseline", recipe=[], quick=quick, out=out_dir)
    report = Report(task_obj.name, command_line("prune"), environment(threads), baseline)
    pruned, result = prune_model(base, task_obj, cfg, floor=baseline.measurement.metric - max_drop, progress=say)

    folder = fresh_dir(out_dir / "pruned")
    weights = save_pruned(pruned, folder, sparse=cfg.mode == "unstructured")
    reloaded = _reload(folder, task_obj, pruned)
    recipe = [cfg.to_dict()]
    say("measuring the pruned model on torch eager")
    torch.set_num_threads(threads)
    deployed = TorchDeployed("torch", weights, dynamic_shapes(task_obj.example_inputs), {"threads": threads},
                             model=reloaded)
    report.candidates.append(measure_entry(deployed, task_obj, reloaded, entry_id="pruned-torch", recipe=recipe,
                                           quick=quick, out=out_dir))
    for name, why_not in status[1:]:
        if why_not is not None:
            report.skipped.append({"target": name, "reason": why_not})
            continue
        # The unpruned model on the same runtime too: without it the runtime's own speed-up over torch
        # eager read as pruning's (a 10%-sparse model, run dense, showed 4x on ONNX Runtime).
        say(f"exporting and measuring the unpruned model on {name}")
        reference = measure_model(base, task_obj, name, fresh_dir(out_dir / "artifacts" / f"unpruned-{name}"),
                                  threads, entry_id=f"unpruned-{name}", recipe=[], quick=quick, out=out_dir)
        say(f"exporting and measuring the pruned model on {name}")
        entry = measure_model(reloaded, task_obj, name, fresh_dir(out_dir / "artifacts" / name), threads,
                              entry_id=f"pruned-{name}", recipe=recipe, quick=quick, out=out_dir)
        entry.float_reference = reference.id
        report.candidates += [reference, entry]
    finalize(report, max_drop)
    report.extra["pruning"] = {**result.to_dict(), "artifact": str(folder.relative_to(out_dir)),
                      "artifact_bytes": sum(p.stat().st_size for p in folder.iterdir())}
    atomic_write_json(out_dir / "recipe.json", {"command": "prune", "task": task_obj.name, "targets": list(targets),
                                                "threads": threads, "max_drop": max_drop, "seed": seed,
                                                "steps": recipe})
    drop_stale_artifacts(report, out_dir)
    report.write(out_dir)
    return report


def _reload(folder: Path, task: Task, pruned: torch.nn.Module) -> torch.nn.Module:
    """Load the saved artifact into a fresh model and prove it computes what the pruned model did."""
    reloaded = load_pruned(folder, task.build_model())
    with torch.no_grad():
        parity = compare(run_model(pruned, task.example_inputs), run_model(reloaded, task.example_inputs))
    if parity.max_abs_diff > 1e-5 * max(1.0, parity.reference_scale):
        raise PruneError(f"the saved pruned model does not reload identically ({parity})",
                         hint="report this as a bug")
    return reloaded
