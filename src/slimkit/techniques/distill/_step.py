"""Distill as a recipe step and as search dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from slimkit.core.config import StepConfig
from slimkit.core.data import Batches
from slimkit.core.technique import Dimension, StepState, Technique
from slimkit.errors import UsageError
from slimkit.techniques.distill._config import DistillConfig
from slimkit.techniques.distill._run import distill_model
from slimkit.train.engine import TrainConfig


def apply(state: StepState, config: DistillConfig) -> StepState:
    """Fine-tune the current model against the unmodified one (soft targets, optional features)."""
    data, teacher_task = state.task.train_data, state.teacher_task
    if not isinstance(data, Batches):
        raise UsageError(f"task '{state.task.name}' has no slimkit.Batches training data to distill on")
    teacher_data = None
    if teacher_task is not None and teacher_task is not state.task:
        if not isinstance(teacher_task.train_data, Batches):
            raise UsageError(f"teacher task '{teacher_task.name}' has no slimkit.Batches training data")
        teacher_data = teacher_task.train_data
    labelled = max(1, round(config.label_fraction * data.num_items)) if config.label_fraction < 1.0 else None
    result = distill_model(state.unmodified(), state.model, data, config, state.task.loss,
                           teacher_data=teacher_data, labelled=labelled,
                           # fit reads any Iterable[Batch]; distill_model's Batches annotation is narrower.
                           eval_data=cast(Batches, state.task.eval_data) if state.history else None,
                           metric=state.task.metric if state.history else None,
                           train_config=TrainConfig(precision=config.precision))
    state.model = result.student.eval()
    state.info["distill"] = {"pairs": result.pairs, "epochs": len(result.train.history)}
    state.results["distill"] = result
    return state


def steps(params: Mapping[str, Any], settings: Mapping[str, Any]) -> list[StepConfig]:
    """In a search, distillation is how a pruned model recovers (soft targets at the drawn
    temperature, from the unmodified model): a trial without pruning has nothing to recover."""
    if not params.get("distill") or not float(params.get("prune_ratio", 0.0) or 0.0) > 0:
        return []
    data: dict[str, Any] = {"epochs": max(1, settings.get("recover_epochs", 0) or 0)}
    if "temperature" in params:
        data["temperature"] = float(params["temperature"])
    return [DistillConfig.from_dict({"type": "distill", "data": data})]


TECHNIQUE = Technique(
    "distill", DistillConfig, apply,
    "knowledge distillation: soft targets with temperature, feature matching through adapters "
    "(auto-paired by depth), attention transfer",
    dimensions=(
        Dimension("distill", "recover a pruned model by distillation instead of fine-tuning"),
        Dimension("temperature", "softmax temperature of the soft targets"),
    ),
    steps=steps,
    settings={"recover_epochs": 0},
    order=30,
)
