"""Recipe-step runners for the techniques, so any recipe (and the search) can chain them.

Each runner reads the state left by the previous steps and returns the new one; the
technique packages stay independent of each other and of the recipe machinery.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slimkit.core.recipe import RecipeState, register_step


def _teacher(state: RecipeState) -> Any:
    if state.teacher is None:
        state.teacher = state.task.build_model()
    return state.teacher


def run_prune(state: RecipeState, cfg: Any) -> RecipeState:
    """Prune (and recover) the torch model; distillation recovery learns from the unmodified model."""
    from slimkit.techniques.prune import prune_model

    state.model, result = prune_model(state.model, state.task, cfg, floor=state.info.get("metric_floor"),
                                      progress=state.progress, on_validation=state.on_validation)
    state.info["prune"] = {"macs_before_after": result.macs, "params_before_after": result.params,
                           "metric_after_prune_before_recovery": result.metric_after_prune,
                           "metric_after_recovery": result.metric_after_recovery, "note": result.note}
    return state


def run_distill(state: RecipeState, cfg: Any) -> RecipeState:
    """Fine-tune the current model against the unmodified one (soft targets, optional features)."""
    from slimkit.core.data import Batches
    from slimkit.techniques.distill import distill_model

    if not isinstance(state.task.train_data, Batches):
        from slimkit.errors import UsageError

        raise UsageError(f"task '{state.task.name}' has no slimkit.Batches training data to distill on")
    result = distill_model(_teacher(state), state.model, state.task.train_data, cfg, state.task.loss)
    state.model = result.student.eval()
    state.info["distill"] = {"pairs": result.pairs, "epochs": len(result.train.history)}
    return state


def run_quantize(state: RecipeState, cfg: Any) -> RecipeState:
    """Quantize for the recipe's target; the artifact becomes the state's deployed model."""
    from slimkit.techniques.quantize import quantize_for_target

    if cfg.target != state.target:
        cfg = dataclasses.replace(cfg, target=state.target)
    result = quantize_for_target(state.model, state.task, cfg, state.workdir / "quantized", state.threads)
    state.deployed = result.deployed
    state.info["quantize"] = {"scheme": cfg.scheme, "float_layers": result.float_layers, **result.details}
    return state


register_step("prune", run_prune)
register_step("distill", run_distill)
register_step("quantize", run_quantize)
