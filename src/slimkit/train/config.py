"""How to train: the settings every training job passes to :func:`slimkit.train.engine.fit`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from slimkit.core.data import Batch
from slimkit.errors import UsageError
from slimkit.train import precision as P
from slimkit.train.schedule import SCHEDULES

FULL_BATCH = 0
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    ``batch_size``: None keeps the data's, ``FULL_BATCH`` (0) is full-batch gradient descent,
    1 is per-sample (stochastic) descent. ``accumulate`` micro-batches make one optimizer step.
    ``precision``: "fp32", "bf16", "fp16" or "auto" (measured; never slower than fp32; the
    choice is kept in the user cache unless ``precision_cache`` is False).
    ``patience``: stop after that many evaluations without a gain of ``min_delta`` in the
    metric (needs ``eval_data`` and ``metric`` passed to :func:`fit`).

    Example:
        >>> TrainConfig(epochs=3, lr=0.01, optimizer="sgd").optimizer
        'sgd'
        >>> TrainConfig(batch_size=FULL_BATCH, accumulate=2, precision="auto").precision
        'auto'
    """

    epochs: int = 10
    lr: float = 1e-3
    optimizer: str = "adamw"  # "adamw" or "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.0
    schedule: str = "cosine"  # "cosine", "constant", "step"
    grad_clip: float | None = None
    seed: int = 0
    step_epochs: float = 0.0  # "step" schedule: epochs between decays (0: a third of the run)
    gamma: float = 0.1  # "step" schedule: decay factor
    batch_size: int | None = None
    accumulate: int = 1
    precision: str = "fp32"
    precision_cache: bool = True  # reuse an "auto" choice measured before for this model, shape and machine
    l1: float = 0.0
    l2: float = 0.0
    dropout: float | None = None
    label_smoothing: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    restore_best: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    resume: bool = False
    device: str = "cpu"
    # Stop once the evaluation metric reaches this value: training measured as time to accuracy.
    until: float | None = None
    # "efficient": the settings below (and precision "auto", the batch size, the warm-up) are chosen
    # by measuring a few training steps on this host (slimkit.train.recipe); "plain" takes them as given.
    recipe: str = "plain"
    memory_format: str = "contiguous"  # or "channels_last" (image inputs)
    optimizer_impl: str = "default"  # torch's choice, "foreach" or "fused"
    compile: bool = False  # torch.compile the training model
    low_res_epochs: int = 0  # progressive resizing: these first epochs with images at low_res_side
    low_res_side: int = 0
    progressive_resizing: bool = False  # let the efficient recipe measure and choose low_res_*

    def __post_init__(self) -> None:
        if self.until is not None and not math.isfinite(self.until):
            raise UsageError(f"--until must be a finite metric value, got {self.until}", hint="e.g. --until 98")
        if self.epochs < 0:
            raise UsageError(f"epochs must be >= 0, got {self.epochs}")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise UsageError(f"learning rate must be a finite number > 0, got {self.lr}",
                             hint="e.g. --lr 1e-3")
        if self.optimizer not in ("adamw", "sgd"):
            raise UsageError(f"unknown optimizer '{self.optimizer}'", hint="use 'adamw' or 'sgd'")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule '{self.schedule}'", hint=f"use one of {', '.join(SCHEDULES)}")
        if self.batch_size is not None and self.batch_size < 0:
            raise UsageError(f"batch size must be >= 0 (0 = full batch), got {self.batch_size}",
                             hint="e.g. --batch-size 64, or leave it out for the task's own")
        if self.accumulate < 1:
            raise UsageError(f"accumulate must be >= 1, got {self.accumulate}")
        _check_recipe_fields(self)
        if self.precision not in P.PRECISIONS:
            raise UsageError(f"unknown precision '{self.precision}'", hint="use auto, fp32, bf16 or fp16")
        if self.resume and not self.checkpoint_dir:
            raise UsageError("resume needs a checkpoint folder", hint="set checkpoint_dir (the CLI uses --out)")
        # Checked here, not when training reaches them (a tuning range's end failed a later trial).
        for name, low, high in (("dropout", 0.0, 1.0), ("label_smoothing", 0.0, 1.0), ("momentum", 0.0, 1.0)):
            value = getattr(self, name)
            if value is not None and not low <= value < high:
                raise UsageError(f"{name} must be in [{low:g}, {high:g}), got {value}")
        for name in ("weight_decay", "l1", "l2", "warmup_epochs", "step_epochs"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.gamma > 0 or (self.grad_clip is not None and not self.grad_clip > 0):
            raise UsageError(f"gamma and grad_clip must be > 0, got {self.gamma} and {self.grad_clip}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_recipe_fields(cfg: TrainConfig) -> None:
    for name, allowed in (("recipe", ("plain", "efficient")), ("memory_format", ("contiguous", "channels_last")),
                          ("optimizer_impl", ("default", "foreach", "fused"))):
        if getattr(cfg, name) not in allowed:
            raise UsageError(f"unknown {name} '{getattr(cfg, name)}'", hint=f"use one of {', '.join(allowed)}")
    if cfg.low_res_epochs < 0 or cfg.low_res_side < 0:
        raise UsageError("low_res_epochs and low_res_side must be >= 0")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names over the trainable parameters, with its kernel (foreach or fused)."""
    params = [p for p in model.parameters() if p.requires_grad]
    foreach = True if cfg.optimizer_impl == "foreach" else None
    fused = True if cfg.optimizer_impl == "fused" else None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               foreach=foreach, fused=fused)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=foreach, fused=fused)


def first_batch(data: Iterable[Batch]) -> Batch:
    saved = getattr(data, "_epoch", None)
    batch = next(iter(data))
    if saved is not None:  # peeking must not advance the shuffle
        data._epoch = saved  # type: ignore[attr-defined]
    return batch
