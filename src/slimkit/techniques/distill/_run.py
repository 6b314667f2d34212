"""Distill a student with the shared training engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from slimkit.core.data import Batches
from slimkit.core.task import Metric
from slimkit.techniques.distill._config import DistillConfig
from slimkit.techniques.distill._distiller import Distiller, paired_batches
from slimkit.train.engine import TrainConfig, TrainResult, fit
from slimkit.train.rates import learning_rate


@dataclass
class DistillResult:
    """The trained student (adapters dropped), the training record and the pairs used."""

    student: nn.Module
    train: TrainResult
    pairs: list[tuple[str, str]]
    config: DistillConfig


def distill_model(
    teacher: nn.Module,
    student: nn.Module,
    data: Batches,
    cfg: DistillConfig,
    task_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    teacher_data: Batches | None = None,
    labelled: int | None = None,
    eval_data: Batches | None = None,
    metric: Metric | None = None,
    train_config: TrainConfig | None = None,
    progress: bool = False,
) -> DistillResult:
    """Train ``student`` (in place) against ``teacher`` on ``data``.

    ``teacher_data`` holds the same items in the same order shaped for the teacher when its
    inputs differ from the student's; ``labelled`` keeps hard labels for the first items only.
    ``train_config`` sets engine options (precision, accumulation...); epochs, lr, batch size
    and seed come from ``cfg``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> x = torch.randn(32, 4); y = (x[:, 0] > 0).long()
        >>> teacher = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> r = distill_model(teacher, nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
        ...                   Batches({"input": x}, y, 8), DistillConfig(epochs=2, feature_weight=1.0, auto_pairs=1),
        ...                   nn.functional.cross_entropy)
        >>> r.pairs, len(r.train.history)
        ([('0', '0')], 2)
    """
    torch.manual_seed(cfg.seed)
    paired = paired_batches(data, teacher_data, labelled)
    example = {k: v[:2] for k, v in data.inputs.items()}
    t_example = {k: v[:2] for k, v in teacher_data.inputs.items()} if teacher_data is not None else None
    module = Distiller(teacher, student, cfg, task_loss, example, t_example)
    if cfg.cache_teacher and not cfg.needs_features:
        module.cache_teacher(paired)
    base = train_config or TrainConfig()
    lr = learning_rate(student, "student", cfg.lr)
    tcfg = TrainConfig(**{**base.to_dict(), "epochs": cfg.epochs, "lr": lr, "seed": cfg.seed,
                          "batch_size": cfg.batch_size if cfg.batch_size is not None else base.batch_size})
    if tcfg.precision == "auto":  # probe the student alone: the wrapper's teacher hooks do not survive a copy
        from slimkit.train import precision as P

        inputs, targets = next(iter(data.subset(data.batch_size)))
        probe = P.probe(student, lambda m: torch.optim.AdamW(m.parameters()), inputs, targets,
                        lambda m, i, t: task_loss(m(**i).float(), t), torch.device(tcfg.device))
        tcfg = TrainConfig(**{**tcfg.to_dict(), "precision": probe.precision})
    try:
        result = fit(module, paired, module.loss, tcfg, eval_data=eval_data, metric=metric, progress=progress)
    finally:
        module.remove()  # the student is returned without the feature hooks
    # The rate used is recorded, not None: a report says what ran.
    return DistillResult(student.eval(), result, module.pairs, dataclasses.replace(cfg, lr=lr))
