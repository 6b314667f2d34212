"""One training loop for every job that fine-tunes a model.

Deliberately small: the loop is seeded and deterministic on CPU, and the pieces that
vary between jobs (loss, augmentation, what to log) come in as arguments.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import Metric, run_model
from slimkit.errors import UsageError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Example:
        >>> TrainConfig(epochs=3, lr=0.01, optimizer="sgd").optimizer
        'sgd'
    """

    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adamw"  # "adamw" or "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # "cosine", "constant"
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise UsageError(f"epochs must be >= 0, got {self.epochs}")
        if self.lr <= 0:
            raise UsageError(f"learning rate must be > 0, got {self.lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise UsageError(f"unknown optimizer '{self.optimizer}'", hint="use 'adamw' or 'sgd'")
        if self.schedule not in ("cosine", "constant"):
            raise UsageError(f"unknown schedule '{self.schedule}'", hint="use 'cosine' or 'constant'")


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(
    model: nn.Module,
    train_data: Iterable[Batch],
    loss_fn: LossFn,
    cfg: TrainConfig,
    *,
    augment: Callable[[Inputs, torch.Generator], Inputs] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place.

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> net = torch.nn.Linear(4, 2)
        >>> r = fit(net, Batches({"input": x}, y, 16), torch.nn.functional.cross_entropy,
        ...         TrainConfig(epochs=2, lr=0.1))
        >>> len(r.history)
        2
    """
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(train_data)) if hasattr(train_data, "__len__") else 1  # type: ignore[arg-type]
    total = steps_per_epoch * cfg.epochs
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    opt = _optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, total, warmup, cfg.schedule)
    )
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        loss_sum, count = 0.0, 0
        for inputs, targets in train_data:
            if augment is not None:
                inputs = augment(inputs, gen)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(run_model(model, inputs), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}")
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            n = targets.shape[0]
            loss_sum += float(loss.detach()) * n
            count += n
        row = {"epoch": epoch + 1, "loss": loss_sum / max(1, count), "lr": sched.get_last_lr()[0]}
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate_torch(model: nn.Module, data: Iterable[Batch], metric: Metric) -> float:
    """The task metric of a torch model over ``data`` (for training; deployment uses measure)."""
    model.eval()
    outs, tgts = [], []
    for inputs, targets in data:
        outs.append(run_model(model, inputs).float())
        tgts.append(targets)
    return metric.compute(torch.cat(outs), torch.cat(tgts))
