"""The accuracy-recovery ladder: when a quantized candidate misses the metric floor, climb.

Rungs, cheapest first, stopping at the first that meets the floor:

1. ``ptq``        post-training quantization as proposed;
2. ``mixed``      mixed-precision fallback: the most sensitive layers stay in float until the
                  drop is within budget (the quantize step's accuracy-aware mode);
3. ``qat``        quantization-aware training through the training engine;
4. ``distill``    distillation-assisted fine-tuning: a pruned model recovers from the
                  unmodified teacher (and is then quantized-aware trained).

Each rung is a rewrite of the recipe, so what was tried is visible in the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from slimkit.errors import UsageError
from slimkit.pipeline import meets_floor
from slimkit.pipeline.recipe import Recipe

RUNGS = ("ptq", "mixed", "qat", "distill")


def _rewrite(recipe: Recipe, kind: str, **changes: object) -> Recipe | None:
    steps = list(recipe.steps)
    for i, step in enumerate(steps):
        step_type = step.TYPE
        if step_type == kind:
            fields = {f.name for f in dataclasses.fields(step)}
            usable = {k: v for k, v in changes.items() if k in fields}
            if not usable:
                return None
            steps[i] = dataclasses.replace(step, **usable)
            return Recipe(tuple(steps), recipe.target)
    return None


def rung(recipe: Recipe, name: str, *, max_drop: float, qat_epochs: int = 2, recover_epochs: int = 3) -> Recipe | None:
    """The recipe for rung ``name``, or None where the rung does not apply to this recipe.

    Example:
        >>> from slimkit.techniques.fuse import FuseConfig
        >>> rung(Recipe((FuseConfig(),), "openvino"), "qat", max_drop=0.5) is None
        True
    """
    if not any(s.TYPE == "quantize" for s in recipe.steps):
        return None
    try:
        return _rung(recipe, name, max_drop=max_drop, qat_epochs=qat_epochs, recover_epochs=recover_epochs)
    except UsageError:
        # The rung's rewrite does not apply to this quantization (QAT makes int8-static models, the
        # float fallback needs an integer scheme on openvino/onnxruntime): a rung skipped, not a
        # trial failed (pruned + int8-dynamic trials failed on the QAT rung).
        return None


def _rung(recipe: Recipe, name: str, *, max_drop: float, qat_epochs: int, recover_epochs: int) -> Recipe | None:
    if name == "ptq":
        return recipe
    if name == "mixed":
        return _rewrite(recipe, "quantize", max_drop=max_drop)
    if name == "qat":
        mixed = _rewrite(recipe, "quantize", max_drop=None) or recipe
        return _rewrite(mixed, "quantize", qat_epochs=qat_epochs)
    if name == "distill":
        prune = next((s for s in recipe.steps if s.TYPE == "prune"), None)
        if prune is not None and getattr(prune, "recover", None) == "distill" and \
                getattr(prune, "recover_epochs", 0) >= recover_epochs:
            return None  # the pruned model already recovers by distillation, for longer than this rung would
        qat = rung(recipe, "qat", max_drop=max_drop, qat_epochs=qat_epochs) or recipe
        return _rewrite(qat, "prune", recover="distill", recover_epochs=recover_epochs)
    raise ValueError(f"unknown rung {name}")


def climb(recipe: Recipe, evaluate: Callable[[Recipe, str], float], floor: float, *, max_drop: float,
          float_metric: float | None = None,
          say: Callable[[str], None] = lambda _m: None) -> tuple[Recipe, str, list[dict[str, object]]]:
    """Evaluate rungs in order until one reaches ``floor``; returns (recipe, rung, history).

    ``evaluate(recipe, rung_name)`` measures a recipe and returns its metric. ``float_metric`` is
    the metric of the model before quantization, when known: if it is already below the floor,
    quantization is not what lost the accuracy, so the mixed-precision and QAT rungs are skipped.
    Otherwise the mixed-precision rung may lose only (0.9 of) the headroom ``float_metric - floor``: its
    drop is measured from that float model, not from the unmodified one, so the search's own
    ``max_drop`` would let a pruned model that sits just above the floor keep every layer in int8
    and miss the floor again. Without a success, the last rung tried is returned with the history.

    Example:
        >>> from slimkit.plugins import config_from_dict
        >>> q = config_from_dict({"type": "quantize", "data": {"scheme": "int8-static", "target": "openvino"}})
        >>> asked = {}
        >>> def evaluate(recipe, name):
        ...     asked[name] = recipe.steps[0].max_drop
        ...     return {"ptq": 96.5, "mixed": 97.01}[name]
        >>> _, chosen, _ = climb(Recipe((q,), "openvino"), evaluate, 97.0, max_drop=3.0, float_metric=97.07)
        >>> chosen, round(asked["mixed"], 3)  # 0.9 of the headroom 97.07 - 97.0
        ('mixed', 0.063)
    """
    history: list[dict[str, object]] = []
    last = (recipe, "ptq")
    skip = {"mixed", "qat"} if float_metric is not None and not meets_floor(float_metric, floor) else set()
    budget = max_drop
    if float_metric is not None:
        # 0.9 of the headroom: the rung measures its reference on the target, which can read a
        # little off the float metric given here, and a hair below the floor is still a miss.
        budget = max(0.0, min(max_drop, 0.9 * (float_metric - floor)))
    for name in RUNGS:
        if name in skip:
            history.append({"rung": name, "skipped": "the model was below the floor before quantization"})
            continue
        candidate = rung(recipe, name, max_drop=budget)
        if candidate is None or (history and candidate == last[0]):
            continue
        metric = evaluate(candidate, name)
        met = meets_floor(metric, floor)
        history.append({"rung": name, "metric": metric, "meets_floor": met})
        last = (candidate, name)
        if met:
            break
        say(f"  {name}: metric {metric:.4g} below the floor {floor:.4g}; next rung")
    return last[0], last[1], history
