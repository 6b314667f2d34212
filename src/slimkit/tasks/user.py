"""A Task from a user's own model and data: the one-call API's way in.

Post-training work needs no labels and no loss. Without labels (or without a metric) the
metric is the fidelity to the original model: the share of items whose top-1 class is the
original's for logits, the cosine similarity for anything else (embeddings, feature maps).
Recovery training then learns the original model's outputs (soft targets for logits).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from slimkit.core.data import Batches
from slimkit.core.task import Metric, Task, accuracy, run_model
from slimkit.errors import SlimkitError, TaskError, UsageError, first_line
from slimkit.tasks._adapters import MAX_ITEMS, Tensors, read_tensors
from slimkit.tasks.zoo import UserModel

EVAL_SHARE = 0.2  # of one data set given alone, held out for evaluation
_MIN_ITEMS = 2


def agreement(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """Top-1 agreement with the original model's logits, in percent.

    Example:
        >>> agreement(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
        50.0
    """
    return float((outputs.argmax(dim=1) == reference.argmax(dim=1)).float().mean().item() * 100.0)


def _cosines(outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    # In float64 with a tiny eps: outputs of ~1e-9 (a badly scaled model) still have a direction.
    return F.cosine_similarity(outputs.flatten(1).double(), reference.flatten(1).double(), dim=1, eps=1e-30)


def cosine(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean cosine similarity of each item's output to the original model's (flattened).

    Example:
        >>> cosine(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
        1.0
    """
    return float(_cosines(outputs, reference).mean().item())


def min_cosine(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    return float(_cosines(outputs, reference).min().item())


def soft_target_loss(outputs: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL divergence from the original model's class distribution (recovery without labels)."""
    return F.kl_div(F.log_softmax(outputs.float(), dim=1), F.log_softmax(reference.float(), dim=1),
                    reduction="batchmean", log_target=True)


def _class_labels(labels: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor | None:
    """Labels as class numbers where they are ones in disguise: a trailing axis of 1, or whole
    numbers stored as floats (a TensorDataset of float targets), for logits."""
    if labels is None or not _is_logits(out):
        return labels
    if labels.dim() == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.is_floating_point() and labels.dim() == 1 and bool((labels == labels.round()).all()):
        labels = labels.long()
    return labels


def _is_logits(out: torch.Tensor) -> bool:
    return out.is_floating_point() and out.dim() == 2 and out.shape[1] > 1


def _is_classes(labels: torch.Tensor | None, out: torch.Tensor) -> bool:
    return (labels is not None and not labels.is_floating_point() and labels.dim() == 1 and _is_logits(out)
            and int(labels.max()) < out.shape[1] and int(labels.min()) >= 0)


def _fidelity(name: str) -> Metric:
    if name == "agreement":
        return Metric("agreement", agreement)
    return Metric("cosine", cosine, {"min_cosine": min_cosine})


FIDELITY = ("agreement", "cosine")


def _as_metric(metric: Metric | str | Callable[..., Any]) -> Metric:
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric == "accuracy":
            return Metric("accuracy", accuracy)
        if metric in FIDELITY:
            return _fidelity(metric)
        raise TaskError(f"unknown metric '{metric}'", hint="use accuracy, agreement or cosine, or pass a function")
    if callable(metric):
        return Metric(getattr(metric, "__name__", "metric"), metric)
    raise TaskError(f"metric must be a slimkit.Metric or a function (outputs, targets) -> float, "
                    f"not {type(metric).__name__}")


@torch.no_grad()
def _outputs(model: nn.Module, data: Tensors) -> torch.Tensor:
    """The original model's outputs on ``data`` (in eval mode, its own mode given back afterwards)."""
    training = model.training
    model.eval()
    try:
        outs = [run_model(model, inputs).float() for inputs, _ in _cut(data, None)]
        return torch.cat(outs)
    except SlimkitError:
        raise
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        shapes = {k: f"{list(v.shape)} {str(v.dtype).removeprefix('torch.')}" for k, v in data.inputs.items()}
        raise TaskError(f"the model fails on the data ({shapes}): {type(exc).__name__}: {first_line(exc)}",
                        hint="give data of the dtype and shape the model's forward() takes") from exc
    finally:
        model.train(training)


def _cut(data: Tensors, targets: torch.Tensor | None) -> Batches:
    t = targets if targets is not None else torch.zeros(data.num_items)
    return Batches(data.inputs, t, batch_size=max(1, min(data.batch_size, 64)))


def _split(data: Tensors, seed: int) -> tuple[Tensors, Tensors]:
    """Calibration/training and evaluation parts of one data set (a seeded shuffle, then a cut)."""
    n = data.num_items
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = n - max(1, round(n * EVAL_SHARE))
    return data.take(order[:cut]), data.take(order[cut:])


def task_from_model(
    model: nn.Module,
    data: Any,
    *,
    eval_data: Any = None,
    metric: Metric | str | Callable[..., Any] | None = None,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    name: str | None = None,
    max_items: int = MAX_ITEMS,
    seed: int = 0,
    preprocess: dict[str, Any] | None = None,
    write_assets: Callable[[Path], None] | None = None,
) -> Task:
    """A :class:`Task` on ``model`` with ``data`` for calibration and recovery, ``eval_data`` for
    the metric (default: a fifth of ``data``, held out).

    ``data`` is a DataLoader, a Dataset, a tokenized ``datasets.Dataset``, or any iterable of
    tensors, ``(inputs, target)`` tuples or dicts (HF-style, labels under ``labels``); positional
    inputs are named after ``model.forward``'s arguments. With class labels and no metric, the
    metric is accuracy; without labels, fidelity to the original model (see the module): top-1
    agreement for outputs of shape (batch, classes), cosine for any other; ``metric="cosine"``
    asks for it on (batch, dim) embeddings, ``"agreement"`` or ``"accuracy"`` by name too.
    At most ``max_items`` items of each data set are read. ``preprocess`` and ``write_assets``
    describe how raw data becomes inputs (see :class:`~slimkit.core.task.Task`).

    Example:
        >>> x = torch.randn(40, 4)
        >>> task = task_from_model(torch.nn.Linear(4, 3), [x[:20], x[20:]])
        >>> task.metric.name, task.train_data.num_items, task.eval_data.num_items
        ('agreement', 32, 8)
    """
    if not isinstance(model, nn.Module):
        raise TaskError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    train = read_tensors(data, model, max_items=max_items)
    evals = read_tensors(eval_data, model, max_items=max_items, what="eval_data") if eval_data is not None else None
    notes: list[str] = []
    if evals is None:
        if train.num_items < _MIN_ITEMS:
            evals = train  # one item: measured on what it calibrates with (nothing to hold out)
            notes.append("evaluated on the calibration item itself")
        else:
            train, evals = _split(train, seed)
    if (train.targets is None) != (evals.targets is None):
        train.targets = evals.targets = None
        notes.append("labels ignored: only one of data and eval_data carries them")
    ref_eval = _outputs(model, evals)
    train.targets, evals.targets = _class_labels(train.targets, ref_eval), _class_labels(evals.targets, ref_eval)
    chosen, fn_loss, use_labels = _choose_metric(metric, loss, evals.targets, ref_eval)
    if evals.targets is not None and not use_labels:
        notes.append(f"labels not used: they are not class numbers for outputs of shape "
                     f"{[None, *ref_eval.shape[1:]]}; the metric is {chosen.name} with the original model")
    ref_train = None if use_labels else _outputs(model, train)
    train_targets = train.targets if use_labels else ref_train
    eval_targets = evals.targets if use_labels else ref_eval
    assert train_targets is not None and eval_targets is not None
    # The loader's batch size within [16, 64]: batch statistics (BatchNorm re-estimation, training
    # in train mode) need more than one item per batch.
    batch = max(16, min(train.batch_size, 64))
    return Task(
        name=name or type(model).__name__,
        model=model,
        example_inputs={k: v[:1].clone() for k, v in evals.inputs.items()},
        train_data=Batches(train.inputs, train_targets, batch, shuffle=True, seed=seed,
                           drop_last=train.num_items > batch),  # no one-item last batch in training
        calibration_data=Batches(train.inputs, train_targets, batch),
        eval_data=Batches(evals.inputs, eval_targets, batch),
        metric=chosen,
        loss=fn_loss,
        description=(f"{type(model).__name__} on {train.num_items} + {evals.num_items} items of the user's data"
                     + (f" (at most {max_items} of each set read)" if train.truncated or evals.truncated else "")
                     + "".join(f"; {n}" for n in notes)),
        throughput_batch=min(32, batch),
        preprocess=preprocess,
        write_assets=write_assets,
    )


def _choose_metric(metric: Metric | str | Callable[..., Any] | None, loss: Callable[..., torch.Tensor] | None,
                   labels: torch.Tensor | None, reference: torch.Tensor) -> tuple[Metric, Any, bool]:
    """(metric, loss, whether targets are the labels) for the data and the model's outputs."""
    classes = _is_classes(labels, reference)
    if metric is not None:
        chosen = _as_metric(metric)
        use_labels = labels is not None and chosen.name not in FIDELITY
        if chosen.name == "accuracy" and not classes:
            raise TaskError("metric 'accuracy' needs class labels (integers) for outputs of shape (batch, classes)",
                            hint="give labels in the data, or use metric='agreement' (the original model's classes)")
    elif classes:
        chosen, use_labels = Metric("accuracy", accuracy), True
    else:
        chosen, use_labels = _fidelity("agreement" if _is_logits(reference) else "cosine"), False
    if loss is None:
        if use_labels and classes:
            loss = F.cross_entropy
        elif use_labels:
            loss = F.mse_loss if labels is not None and labels.is_floating_point() else None
        else:
            loss = soft_target_loss if chosen.name == "agreement" else F.mse_loss
    return chosen, loss or _no_loss, use_labels


def _no_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Training on labels slimkit cannot read (neither class numbers for logits nor float values):
    post-training work never calls it, recovery and QAT say what to pass."""
    raise TaskError("slimkit cannot guess the loss for these labels (neither class numbers for the model's "
                    "logits nor float values)", hint="pass loss=, e.g. torch.nn.functional.cross_entropy")


MetricLike = Metric | str | Callable[..., Any]


def task_from_user_model(user: UserModel, data: Any, *, eval_data: Any = None,
                         metric: MetricLike | None = None, seed: int = 0) -> Task:
    """A Task on a zoo model (:func:`slimkit.tasks.zoo.load_model`), its preprocessing recorded."""
    pre = {**user.preprocess, **({"labels": user.labels} if user.labels else {})}
    return task_from_model(user.model, data, eval_data=eval_data, metric=metric, name=user.name, seed=seed,
                           preprocess=pre, write_assets=user.write_assets if user.has_assets else None)


def resolve_task(task: str | Task | nn.Module | UserModel, data: Any, *, eval_data: Any = None,
                 metric: MetricLike | None = None, seed: int = 0, needs_data: str = "") -> str | Task:
    """``task`` as the run layer takes it: a user's ``nn.Module`` with ``data`` becomes a :class:`Task`.

    ``needs_data`` names the job for the error when a model comes without data.
    """
    if isinstance(task, (nn.Module, UserModel)) and data is None:
        raise UsageError(f"{needs_data or 'this job'} needs data for your model: a few batches of its inputs",
                         hint="pass data= (a DataLoader, a list of tensors or of (inputs, target) tuples)")
    if isinstance(task, UserModel):
        return task_from_user_model(task, data, eval_data=eval_data, metric=metric, seed=seed)
    if isinstance(task, nn.Module):
        return task_from_model(task, data, eval_data=eval_data, metric=metric, seed=seed)
    given = [name for name, value in (("data", data), ("eval_data", eval_data), ("metric", metric))
             if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} go with your own model; the task '{_name(task)}' brings its own",
                         hint="pass an nn.Module as the first argument, or put the data in the Task")
    return task


def _name(task: object) -> str:
    return task if isinstance(task, str) else getattr(task, "name", type(task).__name__)
