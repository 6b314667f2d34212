"""Deploy a model on a target and measure it: one path for every command and every search trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.task import Task
from slimkit.measure.flops import count_macs, count_params
from slimkit.measure.measure import measure_deployed
from slimkit.measure.memory import PeakMemory
from slimkit.report.schema import Entry
from slimkit.targets import Deployed, get_target


def measure_model(
    model: nn.Module, task: Task, target: str, workdir: Path, threads: int, *,
    entry_id: str, recipe: list[dict[str, Any]], quick: bool = False, out: Path | None = None,
) -> Entry:
    """Deploy a torch ``model`` on ``target`` under ``workdir``, run every measurement, return an Entry."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    with PeakMemory() as load_mem:
        deployed = get_target(target).deploy(model, task.example_inputs, workdir, threads)
    return measure_entry(deployed, task, model, entry_id=entry_id, recipe=recipe, quick=quick, out=out,
                         load_memory=load_mem.peak_increase)


def measure_entry(
    deployed: Deployed, task: Task, model: nn.Module, *, entry_id: str, recipe: list[dict[str, Any]],
    quick: bool = False, out: Path | None = None, load_memory: int = 0,
) -> Entry:
    """Measure an already deployed artifact (e.g. a quantized IR); ``model`` is the torch model it
    came from, used for parameter and MAC counts (quantization does not change them)."""
    measurement = measure_deployed(deployed, task, quick=quick, load_memory=load_memory)
    artifact = None
    if deployed.artifact is not None:
        artifact = str(deployed.artifact.relative_to(out) if out and deployed.artifact.is_relative_to(out)
                       else deployed.artifact)
    entry = Entry(entry_id, recipe, deployed.target, measurement, count_params(model),
                  count_macs(model, task.example_inputs), artifact)
    if warning := measurement.details.get("output_warning"):
        entry.notes.append(str(warning))
    return entry


