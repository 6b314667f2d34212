"""Distillation losses, each a plain function of tensors (and the choice of one for a task).

Shared by the ``distill`` technique, pruning's distillation recovery and quantization-aware
training on a transfer set, which live in separate technique packages that must not import
each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from slimkit.errors import TaskError, first_line, resource_error

if TYPE_CHECKING:
    from slimkit.core.task import Task


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Response-based KD (Hinton et al.): KL between temperature-softened distributions, times T^2
    so the gradient scale does not shrink as T grows.

    Example:
        >>> z = torch.randn(4, 10)
        >>> float(kd_loss(z, z, 4.0)) < 1e-6
        True
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def distill_loss(task: Task) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss between a student's outputs and the teacher's (or a transfer set's stored teacher
    outputs): KL on softened logits for classifiers (integer training targets), else the task's
    own loss with the teacher's output as target.

    Example:
        >>> from slimkit.core.data import Batches
        >>> from slimkit.core.task import Metric, Task, accuracy
        >>> x = torch.randn(8, 4)
        >>> d = Batches({"input": x}, torch.randint(0, 2, (8,)), 4)
        >>> t = Task("toy", torch.nn.Linear(4, 2), {"input": x[:1]}, d, d, d, Metric("acc", accuracy), F.cross_entropy)
        >>> z = torch.randn(3, 2)
        >>> float(distill_loss(t)(z, z)) < 1e-6
        True
    """
    sample = next(iter(task.train_data))[1]
    if sample.dtype in (torch.int64, torch.int32):
        return lambda student, teacher: kd_loss(student, teacher, 4.0)
    return task.loss


def hard_loss(loss_fn, logits: torch.Tensor, targets: torch.Tensor, ignore: int = -100) -> torch.Tensor:  # noqa: ANN001
    """The task's loss on labelled rows only (unlabelled rows carry ``ignore``)."""
    if targets.is_floating_point():
        return loss_fn(logits, targets)
    mask = targets != ignore
    if not bool(mask.any()):
        return logits.sum() * 0.0
    return loss_fn(logits[mask], targets[mask])


def _resize_like(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    if x.shape[-1] >= size[-1] and x.shape[-2] >= size[-2]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def attention_map(feature: torch.Tensor) -> torch.Tensor:
    """Spatial attention (Zagoruyko & Komodakis): channel-mean of squared activations, (N, H, W)."""
    return feature.float().pow(2).mean(dim=1)


def attention_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Squared distance between L2-normalized attention maps (student map resized to the teacher's).

    Example:
        >>> f = torch.randn(2, 8, 4, 4)
        >>> float(attention_loss(f, torch.cat([f, f], 1))) < 1e-6
        True
    """
    a_t = attention_map(teacher_feature)
    a_s = _resize_like(attention_map(student_feature).unsqueeze(1), (a_t.shape[-2], a_t.shape[-1])).squeeze(1)
    a_s, a_t = F.normalize(a_s.flatten(1), dim=1), F.normalize(a_t.flatten(1), dim=1)
    return (a_s - a_t).pow(2).sum(dim=1).mean()


def feature_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """MSE between the adapted student feature and the teacher's, standardized per sample so
    the target's scale (which differs wildly between layers) does not set the loss weight."""
    t = teacher_feature.float()
    if t.dim() == 4 and adapted_student.dim() == 2:
        t = t.mean(dim=(2, 3))
    t = F.layer_norm(t, t.shape[1:])
    return F.mse_loss(adapted_student.float(), t)


def hidden_state_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Relative squared error ``||s - t||^2 / ||t||^2`` between two same-shaped hidden states,
    over real tokens only where a (batch, seq) padding ``mask`` is given: padding is never
    pooled, so matching it would only spend capacity.

    Example:
        >>> t = torch.randn(2, 5, 8)
        >>> float(hidden_state_loss(t, t)), round(float(hidden_state_loss(torch.zeros(2, 5, 8), t)), 4)
        (0.0, 1.0)
        >>> mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
        >>> s = t.clone(); s[0, 3:] = 99.0  # padding positions differ: no loss
        >>> float(hidden_state_loss(s, t, mask))
        0.0
    """
    s, t = student.float(), teacher.float()
    err, ref = (s - t).pow(2), t.pow(2)
    if mask is not None and s.dim() == 3 and mask.shape == s.shape[:2]:
        m = mask.unsqueeze(-1).to(err.dtype)
        err, ref = err * m, ref * m
    return err.sum() / ref.sum().clamp(min=1e-12)


def loss_on_labels(loss_fn: Callable[..., torch.Tensor], out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The task's loss on a batch; a loss that fails on the task's own labels (a class number past the
    model's outputs, labels of another shape) is the task's error, said in one line."""
    try:
        return loss_fn(out.float(), targets)
    except Exception as exc:  # the user's loss function, or torch's on the user's labels
        if (resource := resource_error(exc)) is not None:
            raise resource from exc
        classes = f"; the model has {out.shape[-1]} outputs" if out.dim() >= 2 else ""
        span = (f", labels {int(targets.min())}..{int(targets.max())}"
                if targets.numel() and not targets.is_floating_point() else "")
        raise TaskError(f"the task's loss fails on its labels: {type(exc).__name__}: {first_line(exc)}"
                        f"{classes}{span}",
                        hint="labels must be class numbers 0..outputs-1 (or what the task's loss takes)") from exc
