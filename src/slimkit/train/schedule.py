"""Learning-rate schedules: linear warm-up, then cosine, step decay or constant.

The schedule is a pure function of the optimizer step, so a resumed run lands on exactly the
learning rate an uninterrupted run would have used (LambdaLR only stores the step counter).
"""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "constant", "step")


def lr_factor(step: int, total: int, warmup: int, schedule: str, step_every: int = 0, gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based).

    Example:
        >>> [round(lr_factor(s, 10, 2, "cosine"), 3) for s in (0, 1, 2, 9)]
        [0.5, 1.0, 1.0, 0.038]
        >>> [lr_factor(s, 9, 0, "step", step_every=3) for s in (0, 3, 6)]
        [1.0, 0.1, 0.010000000000000002]
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    if schedule == "step":
        every = step_every or max(1, (total - warmup) // 3)
        return gamma ** ((step - warmup) // every)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(opt: torch.optim.Optimizer, total: int, warmup: int, schedule: str, step_every: int = 0,
                    gamma: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup, schedule, step_every, gamma))
