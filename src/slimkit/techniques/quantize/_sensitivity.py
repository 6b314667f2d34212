"""Per-layer sensitivity: the metric drop when only that layer is quantized."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from slimkit.core.data import Batches
from slimkit.core.task import Task
from slimkit.export.parity import compare
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._backends import Backend


def eval_subset(task: Task, items: int) -> Task:
    """The task with its evaluation set cut to ``items`` (sensitivity runs many evaluations)."""
    if isinstance(task.eval_data, Batches) and task.eval_data.num_items > items:
        return dataclasses.replace(task, eval_data=task.eval_data.subset(items))
    return task


def _outputs(deployed: Deployed, task: Task) -> tuple[torch.Tensor, torch.Tensor]:
    outs, tgts = zip(*((deployed.run(inputs), targets) for inputs, targets in task.eval_data), strict=True)
    return torch.cat(outs), torch.cat(tgts)


def sensitivity(backend: Backend, task: Task,
                say: Callable[[str], None] = lambda _m: None) -> list[dict[str, float | str]]:
    """Rows ``{"layer", "origin", "metric", "drop", "output_error"}``, most sensitive first.

    ``drop`` is the float model's metric on the same target minus the metric with only that
    layer quantized; ``output_error`` (1 - cosine to the float outputs) breaks ties, since on
    an easy evaluation subset many layers drop nothing yet still differ in harm.
    """
    float_out, targets = _outputs(backend.load_float(), task)
    reference = task.metric.compute(float_out, targets)
    layers = backend.layers()
    names = [name for name, _ in layers]
    rows: list[dict[str, float | str]] = []
    for i, (layer, origin) in enumerate(layers):
        say(f"sensitivity {i + 1}/{len(layers)}: {origin or layer}")
        deployed = backend.build([other for other in names if other != layer], f"sens{i}")
        out, _ = _outputs(deployed, task)
        metric = task.metric.compute(out, targets)
        rows.append({"layer": layer, "origin": origin, "metric": round(metric, 6),
                     "drop": round(reference - metric, 6),
                     "output_error": round(1.0 - compare(float_out, out).cosine, 8)})
    rows.sort(key=lambda r: (-float(r["drop"]), -float(r["output_error"])))
    return rows
