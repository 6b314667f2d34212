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

from slimkit.core.recipe import Recipe

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
    The mixed-precision rung is also skipped when post-training quantization already lost less
    than its budget (``max_drop``, measured from that same float model): it would keep every
    layer in int8 and return the same model, after a sensitivity pass (11.5 minutes on the
    pruned MiniLM of the search benchmark). Without a success, the last rung tried is returned
    with the history.
    """
    history: list[dict[str, object]] = []
    last = (recipe, "ptq")
    skip = {"mixed", "qat"} if float_metric is not None and float_metric < floor else set()
    for name in RUNGS:
        if name in skip:
            history.append({"rung": name, "skipped": "the model was below the floor before quantization"})
            continue
        ptq_metric = history[0].get("metric") if name == "mixed" and history else None
        # 0.9 of the budget: the rung measures its reference on the target, which can read a
        # little off the float metric given here.
        if float_metric is not None and isinstance(ptq_metric, float) and float_metric - ptq_metric <= 0.9 * max_drop:
            history.append({"rung": name, "skipped": f"post-training quantization lost "
                            f"{float_metric - ptq_metric:.4g}, within this rung's budget {max_drop:.4g}: "
                            "every layer would stay int8"})
            say(f"  {name}: skipped (post-training quantization already within its budget); next rung")
            continue
        candidate = rung(recipe, name, max_drop=max_drop)
        if candidate is None or (history and candidate == last[0]):
            continue
        metric = evaluate(candidate, name)
        history.append({"rung": name, "metric": metric, "meets_floor": metric >= floor})
        last = (candidate, name)
        if metric >= floor:
            break
        say(f"  {name}: metric {metric:.4g} below the floor {floor:.4g}; next rung")
    return last[0], last[1], history
