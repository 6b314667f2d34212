"""``slimkit.prune``: prune a task's model, recover it, and measure it on every target."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.api.benchmark import DEFAULT_TARGETS
from slimkit.core.task import Task, run_model
from slimkit.core.technique import StepState
from slimkit.export.parity import compare
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
from slimkit.pipeline.skeleton import Naming, Run
from slimkit.targets import Deployed
from slimkit.targets.base import dtype_name, dynamic_shapes
from slimkit.targets.manifest import write_manifest
from slimkit.targets.torch_eager import TorchDeployed
from slimkit.tasks.user import MetricLike, resolve_task
from slimkit.techniques.prune import PruneConfig, PruneError, load_pruned, save_pruned


@refusal_leaves_no_folder
def prune(
    task: str | Task | nn.Module = "digits-cnn",
    data: Any = None,
    *,
    ratio: float = 0.5,
    structured: bool = True,
    criterion: str = "l2",
    recover_epochs: int = 0,
    recover: str = "finetune",
    lr: float | None = None,
    config: PruneConfig | None = None,
    eval_data: Any = None,
    metric: MetricLike | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    out: str | Path = "runs/prune",
    threads: int | None = None,
    max_drop: float | None = None,
    quick: bool = False,
    seed: int = 0,
    progress: Progress | None = None,
    objective: str = "latency",
) -> Result:
    """Prune a model, recover it, save it, and measure it against the unpruned baseline.

    ``task`` is a task (name, ``file.py:function`` or :class:`Task`) or your own ``nn.Module``
    with ``data`` (for recovery and calibration; ``eval_data`` measures, see
    :func:`slimkit.quantize`). Without labels, recovery learns the original model's outputs.

    ``config`` overrides every pruning argument when given. ``lr`` is recovery's learning rate
    (default: chosen for the model family: 2e-5 fine-tuning a transformer, 1e-3 a CNN or MLP).
    Writes ``out/report.json`` (baseline = the unpruned model on torch eager; candidates = the
    pruned model on torch and every other available target), ``out/report.md``,
    ``out/recipe.yaml`` and the pruned model in ``out/pruned/`` (load it back with
    :func:`slimkit.load` and the original model, or :func:`slimkit.techniques.prune.load_pruned`).

    Example:
        >>> import tempfile
        >>> r = prune("digits-cnn", ratio=0.3, targets=["torch"], out=tempfile.mkdtemp(), quick=True)
        >>> r.extra["pruning"]["macs_reduction"] > 1.5
        True
    """
    check_threads(threads)
    objective = check_objective(objective)
    check_budgets(max_drop=max_drop)
    targets = target_names(targets)
    cfg = config or PruneConfig(mode="structured" if structured else "unstructured", ratio=ratio,
                                criterion=criterion, recover_epochs=recover_epochs, recover=recover,  # type: ignore[arg-type]
                                lr=lr, seed=seed)
    check_targets(targets)  # unknown names fail here, before any work
    task = resolve_task(task, data, eval_data=eval_data, metric=metric, seed=seed, needs_data="pruning")
    run = Run.open("prune", task, out, threads=threads, quick=quick, seed=seed, progress=progress)
    max_drop = cfg.max_drop if max_drop is None else max_drop  # None: the task's budget, once the baseline is known
    cfg = dataclasses.replace(cfg, max_drop=max_drop)
    stored: dict[str, Any] = {}

    def store(pruned: torch.nn.Module, state: StepState) -> tuple[torch.nn.Module, Deployed]:
        """Save the pruned model without pickle (sparse weights compressed), prove it reloads, and
        measure the reloaded one: what a user deploys from ``pruned/``."""
        folder = run.fresh("pruned")
        weights = save_pruned(pruned, folder, sparse=cfg.mode == "unstructured")
        reloaded = _reload(folder, run.task, pruned)
        stored.update(state.results["prune"].to_dict(), artifact=str(folder.relative_to(run.out)),
                      artifact_bytes=sum(p.stat().st_size for p in folder.iterdir()))
        torch.set_num_threads(run.threads)
        deployed = TorchDeployed("torch", weights, dynamic_shapes(run.task.example_inputs), {"threads": run.threads},
                                 {k: dtype_name(v.dtype) for k, v in run.task.example_inputs.items()}, model=reloaded)
        write_manifest(deployed)  # slimkit.load(pruned/, model=original) rebuilds it from the folder
        return reloaded, deployed

    naming = Naming(reference=lambda t: f"unpruned-{t}", candidate=lambda t: f"pruned-{t}",
                    reference_noun="the unpruned model", candidate_noun="the pruned model")
    report = run.recipe(Recipe((cfg,)), ["torch", *[t for t in targets if t != "torch"]], naming=naming,
                        max_drop=max_drop, after_steps=store)
    report.extra["pruning"] = stored
    return Result.of(run.finish(max_drop, objective=objective), run.out, run.task.build_model())


def _reload(folder: Path, task: Task, pruned: torch.nn.Module) -> torch.nn.Module:
    """Load the saved artifact into a fresh model and prove it computes what the pruned model did."""
    reloaded = load_pruned(folder, task.build_model())
    with torch.no_grad():
        parity = compare(run_model(pruned, task.example_inputs), run_model(reloaded, task.example_inputs))
    if parity.max_abs_diff > 1e-5 * max(1.0, parity.reference_scale):
        raise PruneError(f"the saved pruned model does not reload identically ({parity})",
                         hint="report this as a bug")
    return reloaded
