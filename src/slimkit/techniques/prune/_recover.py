"""Recovery after pruning through the shared training engine: fine-tuning on the task loss, or
distillation from the unpruned model, stopping once the metric is back within budget."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from slimkit.core.data import Batch, Batches, primary_output
from slimkit.core.task import Task, run_model
from slimkit.kernels.batchnorm import reestimate
from slimkit.kernels.hooks import Recorder
from slimkit.kernels.teacher import TeacherStudent
from slimkit.train.engine import TrainConfig, evaluate_torch, fit
from slimkit.train.losses import distill_loss, hidden_state_loss
from slimkit.train.modes import frozen_embeddings, no_dropout
from slimkit.train.rates import learning_rate


class _Stop(BaseException):
    """Raised from the epoch callback to end training early (the budget is met)."""


@dataclass
class RecoveryResult:
    epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    selection: str | None = None  # which data the early-stopping check read
    hidden_layers: list[str] = field(default_factory=list)  # hidden states matched by distillation
    lr: float | None = None  # the learning rate recovery trained at (given, or chosen for the model family)
    batchnorms: int = 0  # BatchNorms whose statistics were re-estimated after training
    # The check metric (validation split) before and after recovery; recovery that lowered it is undone.
    check_before: float | None = None
    check_after: float | None = None
    undone: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"epochs": self.epochs, "stopped_early": self.stopped_early, "history": self.history,
                "early_stopping_on": self.selection, "hidden_layers": self.hidden_layers, "lr": self.lr,
                "batchnorms_reestimated": self.batchnorms, "check_before": self.check_before,
                "check_after": self.check_after, "undone": self.undone}


class Distilled(TeacherStudent):
    """The student trained against the unpruned teacher, run live on every batch.

    The loss is the output loss (KL on softened logits for classifiers, else the task's own
    loss against the teacher's output) plus, for each ``hidden`` layer present in both models
    with the same output shape (structured pruning keeps module names; BERT layers keep their
    width), the relative squared error between the two layers' outputs over real tokens.
    Matching every layer's hidden state gives the pruned student a signal at each depth, not
    only at the end: on a MiniLM with a third of its heads and half its FFN neurons removed,
    the final-output loss alone plateaued far short of the original.
    The teacher is frozen in place (not copied) and stays on its device.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, out_loss: Callable[[torch.Tensor, torch.Tensor],
                 torch.Tensor], hidden: list[str], hidden_weight: float) -> None:
        super().__init__(student, teacher)
        self.out_loss, self.hidden_weight = out_loss, hidden_weight
        self.hidden = hidden if hidden_weight > 0 else []
        self._stash: dict[str, object] = {}
        self.record([(name, name) for name in self.hidden])

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        self._stash["teacher"] = primary_output(self.teacher_output(inputs)).float()
        self._stash["mask"] = inputs.get("attention_mask")
        return run_model(self.student, inputs)

    def loss(self, outputs: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
        total = self.out_loss(outputs, self._stash["teacher"])  # type: ignore[arg-type]
        if not self.hidden:
            return total
        mask = self._stash.get("mask")
        terms = [hidden_state_loss(s, t, mask if isinstance(mask, torch.Tensor) else None)
                 for s, t in zip(self.student_features(), self.teacher_features(), strict=True)]
        return total + self.hidden_weight * torch.stack(terms).mean()


def hidden_layers(student: nn.Module, teacher: nn.Module, inputs: dict[str, torch.Tensor]) -> list[str]:
    """Layers whose outputs the student can match directly: each BERT layer's final LayerNorm
    (the layer's hidden state), where both models produce the same shape."""
    from slimkit.techniques.prune._transformer import bert_layers

    names = [f"{n}.output.LayerNorm" for n, _ in bert_layers(student)]
    s_mods, t_mods = dict(student.named_modules()), dict(teacher.named_modules())
    names = [n for n in names if n in s_mods and n in t_mods]
    with Recorder(student, names) as s_rec, Recorder(teacher, names) as t_rec, torch.no_grad():
        run_model(student.eval(), inputs)
        run_model(teacher.eval(), inputs)
    shapes = {tag: {n: tuple(out.shape) for n, out in rec.outputs.items()} for tag, rec in (("s", s_rec), ("t", t_rec))}
    return [n for n in names if n in shapes["s"] and shapes["s"][n] == shapes["t"].get(n)]


def recovery_lr(model: nn.Module, method: str, given: float | None = None) -> float:
    """``given``, else the recovery learning rate for ``model``'s family and ``method`` (finetune, distill)."""
    return learning_rate(model, method, given)


def _split(data: Iterable[Batch]) -> tuple[Iterable[Batch], Iterable[Batch] | None]:
    if isinstance(data, Batches) and data.num_items >= 20:
        return data.holdout(0.1)
    return data, None


def _source(task: Task, method: str) -> Iterable[Batch]:
    """What recovery with ``method`` learns from: the transfer set for distillation, else the labels."""
    return task.transfer() if method == "distill" else task.train_data


def train_split(task: Task, method: str) -> Iterable[Batch]:
    """The data recovery with ``method`` trains on (its validation split removed)."""
    return _split(_source(task, method))[0]


def recover(model: nn.Module, task: Task, *, epochs: int, lr: float | None = None, method: str = "finetune",
            teacher: nn.Module | None = None, floor: float | None = None, seed: int = 0,
            hidden_weight: float = 1.0, keep_better: bool = True,
            on_epoch: Callable[[int, dict[str, float]], None] | None = None,
            on_validation: Callable[[int, float], None] | None = None,
            progress: Callable[[str], None] | None = None) -> RecoveryResult:
    """Train ``model`` in place for up to ``epochs``; stop early once the metric is back
    within ``floor`` (the baseline's evaluation metric minus the allowed drop).

    The early-stopping check reads a validation split held out from the training (or, for
    distillation, the transfer) data, never the task's evaluation set: the allowed drop
    ``teacher's evaluation metric - floor`` is applied to the teacher's validation metric
    (for distillation on a task's own transfer set, validation must clear that floor by half the
    allowed drop, since the transfer set is not the evaluation distribution).
    Distillation learns from ``task.transfer()`` (more inputs than the labelled training set
    where the task has them), matches hidden states where the models allow it and trains with
    dropout off (:func:`no_dropout`) and embedding tables fixed (:func:`frozen_embeddings`);
    fine-tuning on labels keeps the model's dropout and trains every parameter.
    ``on_validation(epoch, validation metric)`` sees every epoch's score and may raise to stop
    (a search's early-stopping pruner does). Afterwards BatchNorm statistics are re-estimated and,
    with ``keep_better``, recovery that lowered the validation metric is undone.
    """
    result = RecoveryResult()
    if epochs < 1:
        return result
    lr = result.lr = recovery_lr(model, method, lr)
    if method == "distill" and teacher is None:
        raise ValueError("distillation needs the unpruned teacher")
    train, val = _split(_source(task, method))
    check = val if val is not None else task.eval_data
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result.check_before = evaluate_torch(model, check, task.metric)
    val, val_floor = _stopping_rule(task, method, teacher, floor, val, result)
    module, loss = _trained_module(model, teacher, task, method, hidden_weight, result)
    after_epoch = _after_epoch(model, task, epochs, val, val_floor, result, on_epoch, on_validation, progress)
    distilling = method == "distill"
    quiet = no_dropout(model) if distilling else contextlib.nullcontext()
    fixed = frozen_embeddings(model) if distilling else contextlib.nullcontext()
    try:
        with quiet, fixed, contextlib.suppress(_Stop):  # _Stop: after_epoch found the metric back within budget
            fit(module, train, loss, TrainConfig(epochs=epochs, lr=lr, seed=seed, warmup_epochs=0.0),
                on_epoch=after_epoch)
    finally:
        if isinstance(module, Distilled):
            module.remove()
    _keep_the_better(model, task, check, before if keep_better else None, result)
    if result.undone and progress:
        progress(f"  recovery lowered the check {task.metric.name} ({result.check_before:.4f} -> "
                 f"{result.check_after:.4f}): the model before recovery is kept")
    return result


def _keep_the_better(model: nn.Module, task: Task, check: Iterable[Batch], before: dict[str, torch.Tensor] | None,
                     result: RecoveryResult) -> None:
    """BatchNorm statistics re-estimated for the trained weights, then recovery is kept only when it
    did not lower the check metric: a learning rate too high for the model must not leave it worse
    than no recovery at all."""
    result.batchnorms = reestimate(model, task.calibration_data)
    result.check_after = evaluate_torch(model, check, task.metric)
    if before is not None and result.check_before is not None and result.check_after < result.check_before:
        model.load_state_dict(before)
        result.undone = True
    model.eval()


def _stopping_rule(task: Task, method: str, teacher: nn.Module | None, floor: float | None,
                   val: Iterable[Batch] | None, result: RecoveryResult) -> tuple[Iterable[Batch] | None, float | None]:
    """The data the early-stopping check reads and the metric it must reach there (None: no early stop)."""
    if floor is None:
        return val, None
    if val is None:
        result.selection = "evaluation set (the training data cannot be split)"
        return task.eval_data, floor
    result.selection = "validation split (10% of the training data)"
    if teacher is None:
        return val, None
    allowed = evaluate_torch(teacher, task.eval_data, task.metric) - floor
    val_floor = evaluate_torch(teacher, val, task.metric) - allowed
    if method == "distill" and task.transfer_data is not None:
        # A transfer set is other inputs than the evaluation set, so validation on it can read
        # above or below the evaluation metric, by different amounts from recipe to recipe.
        # Stopping right at the floor stopped short of it, so distillation waits for half the budget more.
        val_floor += max(allowed, 0.0) / 2
        result.selection = "validation split (10% of the transfer set), floor + half the allowed drop"
    return val, val_floor


def _trained_module(model: nn.Module, teacher: nn.Module | None, task: Task, method: str, hidden_weight: float,
                    result: RecoveryResult) -> tuple[nn.Module, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """What the engine trains and its loss: the model on the task loss, or (distillation) the
    model wrapped with the live teacher."""
    if method != "distill":
        return model, task.loss
    assert teacher is not None  # recover() refuses distillation without one
    hidden = hidden_layers(model, teacher, task.example_inputs) if hidden_weight > 0 else []
    distilled = Distilled(model, teacher, distill_loss(task), hidden, hidden_weight)
    result.hidden_layers = hidden
    return distilled, distilled.loss


def _after_epoch(model: nn.Module, task: Task, epochs: int, val: Iterable[Batch] | None, val_floor: float | None,
                 result: RecoveryResult, on_epoch: Callable[[int, dict[str, float]], None] | None,
                 on_validation: Callable[[int, float], None] | None,
                 progress: Callable[[str], None] | None) -> Callable[[int, dict[str, float]], None]:
    """The engine's epoch callback: score the validation data, record the epoch, report it, and
    raise :class:`_Stop` once the metric is back within budget before the last epoch."""

    def after_epoch(epoch: int, row: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, row)
        if val is not None:
            row = dict(row, val_metric=evaluate_torch(model, val, task.metric))
            model.train()
        result.history.append(row)
        result.epochs = epoch
        if progress:
            shown = f", validation {task.metric.name} {row['val_metric']:.4f}" if "val_metric" in row else ""
            progress(f"  recovery epoch {epoch}/{epochs}: loss {row['loss']:.4f}{shown}")
        if on_validation is not None and "val_metric" in row:
            on_validation(epoch, row["val_metric"])
        if val_floor is not None and row["val_metric"] >= val_floor and epoch < epochs:
            result.stopped_early = True
            raise _Stop

    return after_epoch
