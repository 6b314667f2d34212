"""Recovery after pruning through the shared training engine: fine-tuning on the task loss, or
distillation from the unpruned model, stopping once the metric is back within budget."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Batch
from slimkit.core.task import Task, run_model
from slimkit.train.engine import TrainConfig, evaluate_torch, fit


class _Stop(Exception):
    """Raised from the epoch callback to end training early (the budget is met)."""


@dataclass
class RecoveryResult:
    epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"epochs": self.epochs, "stopped_early": self.stopped_early, "history": self.history}


class TeacherBatches:
    """The task's training batches with targets replaced by the teacher's outputs."""

    def __init__(self, data: Iterable[Batch], teacher: nn.Module) -> None:
        self.data, self.teacher = data, teacher.eval()

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Batch]:
        for inputs, _ in self.data:
            with torch.no_grad():  # the yield stays outside: the student must train with gradients
                target = run_model(self.teacher, inputs).float()
            yield inputs, target


def distill_loss(task: Task) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss between student and teacher outputs: KL on softened logits for classifiers
    (integer targets), else the task's own loss with the teacher's output as target."""
    sample = next(iter(task.train_data))[1]
    if sample.dtype in (torch.int64, torch.int32):
        def kl(student: torch.Tensor, teacher: torch.Tensor, t: float = 4.0) -> torch.Tensor:
            return F.kl_div(F.log_softmax(student / t, 1), F.softmax(teacher / t, 1), reduction="batchmean") * t * t
        return kl
    return task.loss


def recover(model: nn.Module, task: Task, *, epochs: int, lr: float, method: str = "finetune",
            teacher: nn.Module | None = None, floor: float | None = None, seed: int = 0,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None,
            progress: Callable[[str], None] | None = None) -> RecoveryResult:
    """Train ``model`` in place for up to ``epochs``; stop early once the evaluation metric
    reaches ``floor`` (baseline minus the allowed drop)."""
    result = RecoveryResult()
    if epochs < 1:
        return result
    if method == "distill":
        if teacher is None:
            raise ValueError("distillation needs the unpruned teacher")
        data: Iterable[Batch] = TeacherBatches(task.train_data, teacher)
        loss = distill_loss(task)
    else:
        data, loss = task.train_data, task.loss

    def after_epoch(epoch: int, row: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, row)
        row = dict(row, metric=evaluate_torch(model, task.eval_data, task.metric))
        model.train()
        result.history.append(row)
        result.epochs = epoch
        if progress:
            progress(f"  recovery epoch {epoch}/{epochs}: loss {row['loss']:.4f}, "
                     f"{task.metric.name} {row['metric']:.4f}")
        if floor is not None and row["metric"] >= floor and epoch < epochs:
            result.stopped_early = True
            raise _Stop

    with contextlib.suppress(_Stop):  # raised by after_epoch once the metric is back within budget
        fit(model, data, loss, TrainConfig(epochs=epochs, lr=lr, seed=seed, warmup_epochs=0.0),
            on_epoch=after_epoch)
    model.eval()
    return result
