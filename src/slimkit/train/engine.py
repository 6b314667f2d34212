"""One training loop for every job that fine-tunes a model.

Plain training, pruning recovery, quantization-aware training and distillation all call
:func:`fit`; what varies between them (loss, augmentation, logging) comes in as arguments.
The loop is seeded and deterministic on CPU, and a resumed run continues bit-for-bit: the
data order, learning rate and random streams are functions of the step, restored from the
checkpoint. Precision, schedules, regularization, checkpoints and distribution live in the
sibling modules.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import Metric, run_model
from slimkit.errors import TrainingError, UsageError
from slimkit.train import checkpoint as ckpt
from slimkit.train import distributed as D
from slimkit.train import precision as P
from slimkit.train import recipe
from slimkit.train.config import LossFn, TrainConfig, first_batch, make_optimizer
from slimkit.train.losses import loss_on_labels
from slimkit.train.progress import TrainProgress
from slimkit.train.regularize import penalty, set_dropout, smooth_labels
from slimkit.train.resume import resume_state
from slimkit.train.schedule import build_scheduler


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    precision: P.PrecisionChoice | None = None
    best_metric: float | None = None
    stopped_early: bool = False
    resumed_from: int = 0
    notes: list[str] = field(default_factory=list)
    # With ``until``: when the metric reached it (epoch, seconds since the start, training items seen).
    reached: dict[str, float] | None = None
    # With recipe "efficient": each choice, what was measured and why (slimkit.train.recipe.plan).
    recipe: dict[str, Any] | None = None


def _with_batch_size(data: Iterable[Batch], batch_size: int | None) -> Iterable[Batch]:
    if batch_size is None:
        return data
    if not hasattr(data, "with_batch_size"):
        raise UsageError("batch_size needs slimkit.Batches data", hint="leave batch_size unset for other iterables")
    return data.with_batch_size(batch_size or data.num_items)  # type: ignore[attr-defined]


def _to(inputs: Inputs, targets: torch.Tensor, device: torch.device) -> Batch:
    if device.type == "cpu":
        return inputs, targets
    return {k: v.to(device, non_blocking=True) for k, v in inputs.items()}, targets.to(device, non_blocking=True)


def _choose_precision(model: nn.Module, data: Iterable[Batch], loss_fn: LossFn, cfg: TrainConfig,
                      device: torch.device, ctx: D.DistContext) -> P.PrecisionChoice:
    if cfg.precision != "auto":
        return P.requested(cfg.precision, device)
    choice = _measure_precision(model, data, loss_fn, cfg, device) if ctx.is_main else None
    return D.broadcast_object(choice)  # every rank must train in the same precision


def _measure_precision(model: nn.Module, data: Iterable[Batch], loss_fn: LossFn, cfg: TrainConfig,
                       device: torch.device) -> P.PrecisionChoice:
    if cfg.precision != "auto":
        return P.requested(cfg.precision, device)
    inputs, targets = _to(*first_batch(data), device)
    key = P.choice_key(model, inputs, device)
    choice = P.cached(key) if cfg.precision_cache else None
    if choice is None:
        choice = P.probe(model, lambda m: make_optimizer(m, cfg), inputs, targets,
                         lambda m, i, t: loss_fn(run_model(m, i).float(), t), device)
        if cfg.precision_cache:
            P.remember(key, choice)
    return choice


def _plan_recipe(model: nn.Module, data: Iterable[Batch], loss_fn: LossFn, cfg: TrainConfig, device: torch.device,
                 ctx: D.DistContext, folder: Path | None,
                 found: Path | None) -> tuple[TrainConfig, P.PrecisionChoice | None, dict[str, Any]]:
    """The efficient recipe's settings: those the run was planned with when it resumes, else measured
    on rank 0 (every rank must train alike) and kept beside the checkpoints."""
    stored = recipe.load(folder) if found is not None and folder is not None else None
    if stored is not None:  # the precision comes back with the checkpoint
        return replace(cfg, **stored[0]), None, stored[1]
    planned = None
    if ctx.is_main:
        choice = _measure_precision(model, data, loss_fn, cfg, device)
        planned = (*recipe.plan(model, data, loss_fn, cfg, device, choice), choice)
    new_cfg, report, choice = D.broadcast_object(planned)
    if folder is not None and ctx.is_main:
        recipe.save(folder, new_cfg, report)
    return new_cfg, choice, report


def fit(
    model: nn.Module,
    train_data: Iterable[Batch],
    loss_fn: LossFn,
    cfg: TrainConfig,
    *,
    augment: Callable[[Inputs, torch.Generator], Inputs] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    eval_data: Iterable[Batch] | None = None,
    metric: Metric | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` in place (under torchrun: data-parallel, each rank on its shard).

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> net = torch.nn.Linear(4, 2)
        >>> r = fit(net, Batches({"input": x}, y, 16), torch.nn.functional.cross_entropy,
        ...         TrainConfig(epochs=2, lr=0.1, accumulate=2))
        >>> len(r.history), r.precision.precision
        (2, 'fp32')
    """
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()  # the recipe's and precision's probes count in the time to a metric
    loop = _start(model, train_data, loss_fn, cfg, augment)
    result, cfg = loop.result, loop.cfg
    enabled = progress and loop.ctx.is_main
    with TrainProgress(loop.micro * cfg.epochs, loop.micro * loop.start_epoch, enabled=enabled) as bar:
        for epoch in range(loop.start_epoch, cfg.epochs):
            if result.stopped_early:
                break
            row = loop.train_epoch(epoch, bar)
            if eval_data is not None and metric is not None:
                loop.evaluate(epoch, row, eval_data, metric, bar)
                if cfg.until is not None and row.get(metric.name, -math.inf) >= cfg.until:
                    done = epoch + 1 - loop.start_epoch
                    result.reached = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - start, 3),
                                      "samples": done * int(getattr(train_data, "num_items", 0))}
                    result.stopped_early = True  # the loop ends after this epoch's checkpoint
            result.history.append(row)
            loop.checkpoint(epoch + 1)
            if on_epoch is not None:
                on_epoch(epoch + 1, row)
    if loop.best_state is not None and cfg.restore_best:  # the best evaluated weights, not the last ones
        model.load_state_dict(loop.best_state)
    if cfg.memory_format == "channels_last":  # hand the model back in the layout it came in
        model.to(memory_format=torch.contiguous_format)
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class _Loop:
    """What one :func:`fit` call carries from step to step and from epoch to epoch."""

    model: nn.Module
    train_model: nn.Module  # ``model``, or its DDP wrapper under torchrun
    data: Iterable[Batch]
    loss_fn: LossFn
    cfg: TrainConfig
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    precision: str
    device: torch.device
    ctx: D.DistContext
    gen: torch.Generator
    augment: Callable[[Inputs, torch.Generator], Inputs] | None
    micro: int  # micro-batches per epoch
    total: int  # optimizer steps of the whole run
    result: TrainResult
    folder: Path | None  # checkpoints
    start_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    bad: int = 0  # evaluations in a row without a gain
    shown: str = ""  # the last evaluated epoch's metric, for the bar

    def train_epoch(self, epoch: int, bar: TrainProgress) -> dict[str, float]:
        """One pass over the data; returns the epoch's history row."""
        D.set_epoch(self.data, epoch)
        self.model.train()
        loss_sum, count = 0.0, 0
        for i, (inputs, targets) in enumerate(self.data):
            loss = self._micro_step(i, inputs, targets, epoch)
            n = targets.shape[0]
            loss_sum += float(loss.detach()) * n
            count += n
            bar.update(epoch + 1, self.cfg.epochs, loss_sum / max(1, count), self.shown)
        row: dict[str, float] = {"epoch": epoch + 1, "loss": loss_sum / max(1, count),
                                 "lr": float(self.sched.get_last_lr()[0])}
        if self.ctx.active:  # report the global mean loss, not rank 0's share
            t = torch.tensor([loss_sum, float(count)], device=self.device)
            torch.distributed.all_reduce(t)
            row["loss"] = float(t[0] / t[1].clamp(min=1))
        return row

    def _micro_step(self, i: int, inputs: Inputs, targets: torch.Tensor, epoch: int) -> torch.Tensor:
        """Forward and backward of the ``i``-th micro-batch; the last of each group steps the optimizer."""
        cfg = self.cfg
        inputs, targets = _to(inputs, targets, self.device)
        if cfg.memory_format == "channels_last" or cfg.low_res_epochs:
            inputs = recipe.prepare_inputs(inputs, cfg, epoch)
        if self.augment is not None:
            inputs = self.augment(inputs, self.gen)
        group = i // cfg.accumulate * cfg.accumulate
        group_len = min(cfg.accumulate, self.micro - group)
        last = i + 1 == group + group_len
        if i == group:
            self.opt.zero_grad(set_to_none=True)
        with self._sync(last):
            with P.autocast(self.precision, self.device):
                out = run_model(self.train_model, inputs)
            loss = loss_on_labels(self.loss_fn, out, targets)
            if not torch.isfinite(loss):
                raise TrainingError(f"the loss became {loss.item()} in epoch {epoch + 1}: training diverged",
                                    hint=f"lower the learning rate (it was {cfg.lr:g}), or use precision "
                                         "fp32 if a lower precision was chosen")
            extra = penalty(self.model, cfg.l1, cfg.l2)
            full = loss if extra is None else loss + extra
            self.scaler.scale(full / group_len if group_len > 1 else full).backward()
        if last:
            if cfg.grad_clip:
                self.scaler.unscale_(self.opt)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
        return loss

    def _sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP: only the last micro-batch of a group all-reduces gradients."""
        if last or not self.ctx.active or not isinstance(self.train_model, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.train_model.no_sync()

    def evaluate(self, epoch: int, row: dict[str, float], eval_data: Iterable[Batch], metric: Metric,
                 bar: TrainProgress) -> None:
        """Score the epoch into ``row``; keep the best weights and stop once patience runs out."""
        cfg, result = self.cfg, self.result
        score = evaluate_torch(self.model, eval_data, metric)
        row[metric.name] = score
        # The bar shows the last epoch's score (it showed the best so far, an epoch behind).
        self.shown = f"  {metric.name} {score:.2f}"
        bar.update(epoch + 1, cfg.epochs, row["loss"], self.shown, advance=0)
        if result.best_metric is None or score > result.best_metric + cfg.min_delta:
            result.best_metric, self.bad = score, 0
            if cfg.patience is not None and cfg.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.bad += 1
            if cfg.patience is not None and self.bad >= cfg.patience:
                result.stopped_early = True
                row["stopped_early"] = 1.0

    def checkpoint(self, epoch: int) -> None:
        """Save after ``epoch`` (1-based) when it is due: every ``checkpoint_every``, the last, a stop."""
        cfg = self.cfg
        if self.folder is None or not (epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs
                                       or self.result.stopped_early):
            return
        if self.ctx.is_main:
            self._save(self.folder, epoch)
        if self.ctx.active:
            torch.distributed.barrier()

    def _save(self, folder: Path, epoch: int) -> None:
        result = self.result
        state: dict[str, Any] = {
            "schedule_steps": self.total,
            "epoch": epoch, "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "history": copy.deepcopy(result.history),
            "precision": result.precision.to_dict() if result.precision else {},
            "best_metric": result.best_metric, "bad_evals": self.bad, "rng": ckpt.rng_state(self.gen),
        }
        if self.best_state is not None:
            state["best_weights"] = self.best_state
        ckpt.save(folder, epoch, self.model, state)


def _start(model: nn.Module, train_data: Iterable[Batch], loss_fn: LossFn, cfg: TrainConfig,
           augment: Callable[[Inputs, torch.Generator], Inputs] | None) -> _Loop:
    """Everything before the first step: device, data, optimizer and schedule, then either the
    checkpoint to resume from or a fresh precision choice."""
    gen = torch.Generator().manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    ctx = D.context()
    model.to(device)
    set_dropout(model, cfg.dropout)
    loss_fn = smooth_labels(loss_fn, cfg.label_smoothing)
    folder = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    found = ckpt.latest(folder) if cfg.resume and folder else None
    result = TrainResult()
    if cfg.recipe == "efficient":
        cfg, result.precision, result.recipe = _plan_recipe(model, train_data, loss_fn, cfg, device, ctx, folder,
                                                            found)
    if cfg.memory_format == "channels_last":
        model.to(memory_format=torch.channels_last)
    data = _with_batch_size(train_data, cfg.batch_size)
    if ctx.active:
        data = D.ShardedBatches(data, ctx.rank, ctx.world)
    micro = max(1, len(data)) if isinstance(data, Sized) else 1
    steps_per_epoch = -(-micro // cfg.accumulate)
    total = steps_per_epoch * cfg.epochs
    opt = make_optimizer(model, cfg)
    sched = build_scheduler(opt, total, int(cfg.warmup_epochs * steps_per_epoch), cfg.schedule,
                            int(cfg.step_epochs * steps_per_epoch), cfg.gamma)
    state: dict[str, Any] = {}
    if found is not None:
        state = resume_state(found, model, opt, sched, gen, total, result)
    elif result.precision is None:
        result.precision = _choose_precision(model, data, loss_fn, cfg, device, ctx)
    assert result.precision is not None  # resumed, or chosen just above
    scaler = P.make_scaler(result.precision.precision, device)
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    train_model = D.wrap_ddp(model, device) if ctx.active else model
    if cfg.compile:
        train_model = cast(nn.Module, torch.compile(train_model))
    return _Loop(model=model, train_model=train_model, data=data,
                 loss_fn=loss_fn, cfg=cfg, opt=opt, sched=sched, scaler=scaler,
                 precision=result.precision.precision, device=device, ctx=ctx, gen=gen, augment=augment,
                 micro=micro, total=total, result=result, folder=folder, start_epoch=state.get("epoch", 0),
                 best_state=state.get("best_weights"), bad=state.get("bad_evals", 0))


@torch.no_grad()
def evaluate_torch(model: nn.Module, data: Iterable[Batch], metric: Metric) -> float:
    """The task metric of a torch model over ``data`` (for training; deployment uses measure)."""
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    outs, tgts = [], []
    for inputs, targets in data:
        inputs, targets = _to(inputs, targets, device)
        outs.append(run_model(model, inputs).float().cpu())
        tgts.append(targets.cpu())
    return metric.compute(torch.cat(outs), torch.cat(tgts))
