"""Measure a deployed model: the task metric through the target, latency, size, memory."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import torch

from slimkit.core.data import batch_of
from slimkit.core.task import Task
from slimkit.errors import NonFiniteError
from slimkit.measure.latency import Latency, time_callable
from slimkit.measure.load import OtherLoad
from slimkit.measure.memory import PeakMemory

if TYPE_CHECKING:  # measure is below targets: a target's loader times itself with measure.latency
    from slimkit.targets.base import Deployed


@dataclass
class Measurement:
    metric_name: str
    metric: float
    extras: dict[str, float]
    latency: Latency
    throughput_batch: int
    throughput: float  # items per second
    size_bytes: int
    peak_memory_bytes: int
    details: dict[str, Any] = field(default_factory=dict)


def evaluate_deployed(deployed: Deployed, task: Task) -> tuple[float, dict[str, float]]:
    """The task metric with the evaluation set run through ``deployed`` (not a torch stand-in)."""
    metric, extras, _ = _evaluate(deployed, task)
    return metric, extras


def _evaluate(deployed: Deployed, task: Task) -> tuple[float, dict[str, float], torch.Tensor]:
    outs, tgts = [], []
    for inputs, targets in task.eval_data:
        outs.append(deployed.run(inputs))
        tgts.append(targets)
    outputs, targets_all = torch.cat(outs), torch.cat(tgts)
    if outputs.is_floating_point() and bool(torch.isnan(outputs).any()):
        # Any metric of NaN outputs is meaningless (an argmax of NaN still "scores" an accuracy).
        raise NonFiniteError(f"the model outputs NaN on {deployed.target}: {output_warning(outputs)}",
                             hint="the model (its weights or forward) is broken, or this target's precision "
                                  "overflows it; check the model in torch first")
    metric = task.metric.compute(outputs, targets_all)
    if not math.isfinite(metric):
        # NaN compares false with every floor: left in, it passed budgets silently and broke reports.
        warning = output_warning(outputs)
        raise NonFiniteError(f"the metric '{task.metric.name}' is {metric} on {deployed.target}"
                             + (f": {warning}" if warning else ""),
                             hint="the model's outputs are broken on this target" if warning else
                             "check the metric function: it returned a non-finite value on finite outputs")
    # Rounded at the source so a value read back from report.json compares equal to a fresh one.
    extras = {k: round(v, 6) for k, v in task.metric.compute_extras(outputs, targets_all).items()}
    return round(metric, 6), extras, outputs


def output_warning(outputs: torch.Tensor) -> str | None:
    """What is wrong with a model's evaluation outputs as a whole, if anything: a metric alone hides it.

    An int8 or f16 model whose activations are too small for its format outputs exactly zero; a
    broken one gives every input the same output or NaN. The report says so next to the entry.

    Example:
        >>> output_warning(torch.zeros(4, 3))
        'every output is exactly zero (values too small for this precision, or a dead model)'
        >>> output_warning(torch.randn(4, 3)) is None
        True
    """
    out = outputs.detach().float()
    if out.numel() == 0:
        return None
    if not torch.isfinite(out).all():
        return f"{int((~torch.isfinite(out)).sum())} of {out.numel()} output values are NaN or infinite"
    if not out.any():
        return "every output is exactly zero (values too small for this precision, or a dead model)"
    if out.shape[0] > 1 and bool((out == out[:1]).all()):
        return f"all {out.shape[0]} evaluation items give the same output: the model ignores its input"
    return None


class _Budget(TypedDict, total=False):
    """Keyword arguments of :func:`time_callable` that bound a timing run."""

    warmup: int
    min_runs: int
    min_seconds: float
    max_seconds: float


def batch1_latency(deployed: Deployed, task: Task, *, quick: bool = False) -> Latency:
    """Batch-1 latency of ``deployed`` on the task's example inputs; ``quick`` shortens the runs (tests)."""
    budget: _Budget = {"min_runs": 10, "min_seconds": 0.05, "max_seconds": 0.5} if quick else {}
    return time_callable(lambda: deployed.run(task.example_inputs), batch=1, **budget)


def measure_deployed(deployed: Deployed, task: Task, *, quick: bool = False,
                     load_memory: int = 0) -> Measurement:
    """Run every measurement on one deployed model.

    ``quick`` shortens latency runs (for tests). ``load_memory`` is the RSS growth seen
    while the artifact was loaded; the larger of it and the evaluation's peak is reported.

    Example:
        >>> from slimkit.tasks import load_task
        >>> from slimkit.targets import get_target
        >>> import tempfile
        >>> task = load_task("digits-cnn")
        >>> d = get_target("torch").deploy(task.build_model(), task.example_inputs, tempfile.mkdtemp(), 1)
        >>> m = measure_deployed(d, task, quick=True)
        >>> m.metric > 90
        True
    """
    with PeakMemory() as mem:
        metric, extras, outputs = _evaluate(deployed, task)
    warning = output_warning(outputs)
    del outputs
    with OtherLoad() as load:
        latency = batch1_latency(deployed, task, quick=quick)
    big = batch_of(task.example_inputs, task.throughput_batch)
    tp_budget: _Budget = {"min_runs": 3, "min_seconds": 0.02, "max_seconds": 0.3} if quick else {
        "min_runs": 10, "min_seconds": 0.5, "max_seconds": 4.0, "warmup": 3}
    tp = time_callable(lambda: deployed.run(big), batch=task.throughput_batch, **tp_budget)
    return Measurement(
        metric_name=task.metric.name,
        metric=metric,
        extras=extras,
        latency=latency,
        throughput_batch=task.throughput_batch,
        throughput=task.throughput_batch / (tp.median / 1e3),
        size_bytes=deployed.size_bytes(),
        peak_memory_bytes=max(mem.peak_increase, load_memory),
        details={**deployed.details, **({"other_load_cores": load.cores} if load.cores is not None else {}),
                 **({"output_warning": warning} if warning else {})},
    )
