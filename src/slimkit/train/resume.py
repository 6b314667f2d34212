"""Resuming a training run from a checkpoint: weights, optimizer, schedule, random streams and history."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimkit.train import checkpoint as ckpt
from slimkit.train import precision as P

if TYPE_CHECKING:
    from slimkit.train.engine import TrainResult


def resume_state(found: Path, model: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR,
            gen: torch.Generator, total: int, result: TrainResult) -> dict[str, Any]:
    """Load the checkpoint ``found`` into the model, optimizer, schedule, random streams and
    ``result``; returns its training state."""
    state = ckpt.load(found, model)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    result.history = state["history"]
    result.precision = P.PrecisionChoice(**state["precision"])  # keep the run's precision: no re-probe
    result.best_metric = state["best_metric"]
    result.resumed_from = state["epoch"]
    ckpt.set_rng_state(state["rng"], gen)
    follow_new_schedule(opt, sched, state.get("schedule_steps"), total, result)
    return state


def follow_new_schedule(opt: torch.optim.Optimizer, sched: Any, stored_steps: int | None, total: int,
                         result: TrainResult) -> None:
    """A resumed run whose schedule spans another number of steps (more --epochs) follows the new
    one from the resumed step on, and says how far the learning rate moved: stretching a cosine
    that had decayed raises it again (a warm restart nobody asked for should not go unnoticed)."""
    if not stored_steps or stored_steps == total:
        return
    step = sched.last_epoch
    old = [g["lr"] for g in opt.param_groups]
    new = [base * fn(step) for base, fn in zip(sched.base_lrs, sched.lr_lambdas, strict=True)]
    for group, lr in zip(opt.param_groups, new, strict=True):
        group["lr"] = lr
    sched._last_lr = list(new)
    if not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(old, new, strict=True)):
        result.notes.append(
            f"the learning-rate schedule was planned over {stored_steps} steps and now spans {total}: "
            f"at the resumed step {step} the learning rate goes from {old[0]:.3g} to {new[0]:.3g}")
