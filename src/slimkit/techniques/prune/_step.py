"""Prune as a recipe step and as search dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slimkit.core.config import StepConfig
from slimkit.core.technique import Dimension, StepState, Technique
from slimkit.techniques.prune._apply import prune_model
from slimkit.techniques.prune._config import PruneConfig


def apply(state: StepState, config: PruneConfig) -> StepState:
    """Prune (and recover) the torch model; distillation recovery learns from the model as it was
    before this step (a copy is pruned)."""
    state.model, result = prune_model(state.model, state.task, config, floor=state.info.get("metric_floor"),
                                      progress=state.progress, on_validation=state.on_validation)
    state.info["prune"] = {"macs_before_after": result.macs, "params_before_after": result.params,
                           "metric_after_prune_before_recovery": result.metric_after_prune,
                           "metric_after_recovery": result.metric_after_recovery, "note": result.note}
    state.results["prune"] = result
    return state


def steps(params: Mapping[str, Any], settings: Mapping[str, Any]) -> list[StepConfig]:
    """Structured pruning at the drawn ratio; recovery from the space's settings unless the trial
    recovers by distillation (the distill technique's step then does it)."""
    ratio = float(params.get("prune_ratio", 0.0) or 0.0)
    if ratio <= 0:
        return []
    distill = bool(params.get("distill"))
    epochs = settings.get("recover_epochs", 0)
    data: dict[str, Any] = {"ratio": ratio, "mode": "structured", "recover_epochs": 0 if distill else epochs}
    if not distill and epochs:
        # "distill" recovers from the unmodified model inside the prune step (hidden states matched
        # where shapes allow, on the task's transfer set); "finetune" on the task loss.
        data["recover"] = settings.get("recover", "finetune")
        if settings.get("recover_lr") is not None:
            data["lr"] = settings["recover_lr"]
    if settings.get("round_to"):
        data["round_to"] = settings["round_to"]
    if settings.get("prune_scope"):
        data["scope"] = settings["prune_scope"]
    if "prune_criterion" in params:
        data["criterion"] = params["prune_criterion"]
    if "prune_head_ratio" in params:
        data["head_ratio"] = float(params["prune_head_ratio"])
    return [PruneConfig.from_dict({"type": "prune", "data": data})]


TECHNIQUE = Technique(
    "prune", PruneConfig, apply,
    "structured (channels, neurons, BERT heads/FFN with config update) and unstructured (magnitude, "
    "global/layer-wise, gradual, 2:4) pruning with recovery",
    dimensions=(
        Dimension("prune_ratio", "fraction of channels/neurons removed (0: no pruning)"),
        Dimension("prune_criterion", "importance criterion (l1, l2, taylor, activation, ...)"),
        Dimension("prune_head_ratio", "transformers: fraction of attention heads removed (default: prune_ratio)"),
    ),
    steps=steps,
    settings={"recover_epochs": 0, "recover": "finetune", "recover_lr": None, "round_to": None,
              "prune_scope": None},
    order=20,
    requires=("torch_pruning",),
)
