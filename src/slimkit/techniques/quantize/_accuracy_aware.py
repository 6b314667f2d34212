"""Accuracy-aware quantization: keep the most sensitive layers in float until the drop is within budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slimkit.core.task import Task
from slimkit.measure.measure import evaluate_deployed
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._backends import Backend


@dataclass
class FallbackResult:
    deployed: Deployed
    float_layers: list[str]
    metric: float
    met: bool
    trials: list[dict[str, object]] = field(default_factory=list)


def keep_sensitive_in_float(backend: Backend, task: Task, reference: float, max_drop: float,
                            ranking: Sequence[str], exclude: Sequence[str] = (),
                            say: Callable[[str], None] = lambda _m: None) -> FallbackResult:
    """Exclude layers of ``ranking`` (most sensitive first) one by one until ``reference - metric <= max_drop``.

    The metric is the full evaluation set run through the quantized artifact on the target.
    """
    kept = list(exclude)
    origins = dict(backend.layers())  # the progress line names the torch module, as the tables do
    trials: list[dict[str, object]] = []
    deployed = backend.build(kept, "aa0")
    metric, _ = evaluate_deployed(deployed, task)
    trials.append({"float_layers": len(kept), "metric": round(metric, 6)})
    for i, layer in enumerate(r for r in ranking if r not in kept):
        if reference - metric <= max_drop:
            break
        kept.append(layer)
        named = f"{origins[layer]} ({layer})" if origins.get(layer) and origins[layer] != layer else layer
        say(f"accuracy-aware: drop {reference - metric:.4g} > {max_drop}, keeping {named} in float")
        deployed = backend.build(kept, f"aa{i + 1}")
        metric, _ = evaluate_deployed(deployed, task)
        trials.append({"float_layers": len(kept), "metric": round(metric, 6)})
    return FallbackResult(deployed, kept, metric, reference - metric <= max_drop + 1e-12, trials)
