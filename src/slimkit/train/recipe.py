"""The efficient training recipe: every choice measured on this host in a short probe.

``TrainConfig(recipe="efficient")`` (the default of ``slimkit train``) replaces the plain loop's
fixed settings by ones a few real training steps of the actual model and batch show to be
faster here, and never slower than the plain fp32 loop: a choice is only taken when it measures
clearly faster (``MIN_GAIN``), so on a host where nothing pays the recipe is the plain loop.

* precision: fp32, bf16 or fp16 autocast (:func:`slimkit.train.precision.probe`);
* memory format: channels_last for models with image inputs;
* optimizer kernel: fused or foreach;
* batch size (with the learning rate scaled by the square root of the batch ratio) when a
  larger batch is much faster per sample; short runs lose optimizer steps otherwise;
* ``torch.compile`` where the planned run is long enough to repay the compilation;
* progressive resizing: the first epochs at half the image side where the model accepts it;
* a short warm-up before the cosine decay (one-cycle shape), which tolerates the higher peak
  learning rate short training wants.

The choices and their measured gains are returned as a report that ``slimkit train`` writes to
train.json, and kept next to the checkpoints so a resumed run trains exactly as it started.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from slimkit.core.data import Batch, Inputs
from slimkit.core.task import run_model
from slimkit.errors import SlimkitError
from slimkit.train import precision as P
from slimkit.train.config import LossFn, TrainConfig, first_batch, make_optimizer
from slimkit.train.losses import loss_on_labels

MIN_GAIN = 1.05  # a choice must measure at least this much faster than what it replaces
BATCH_GAIN = 1.3  # a doubled batch halves the optimizer steps: it must pay for them
RESIZE_GAIN = 1.5  # half-resolution epochs teach less per sample than full ones
COMPILE_MIN_RUN_S = 600.0  # compiling a training step costs tens of seconds on a few cores
CHECKPOINT_SHARE = 0.05  # of the training time, at most, spent writing checkpoints
WARMUP_FRACTION = 0.1  # of the run's epochs, then cosine decay
RECIPE_FILE = "recipe.json"

Step = Callable[[], None]


def image_inputs(inputs: Inputs) -> list[str]:
    """Names of the floating-point inputs shaped (batch, channels, height, width).

    Example:
        >>> image_inputs({"x": torch.zeros(2, 3, 8, 8), "ids": torch.zeros(2, 5, dtype=torch.long)})
        ['x']
    """
    return [k for k, v in inputs.items() if v.is_floating_point() and v.dim() == 4]


def prepare_inputs(inputs: Inputs, cfg: TrainConfig, epoch: int) -> Inputs:
    """A training batch as the recipe trains on it: at the epoch's image side, in its memory format."""
    names = image_inputs(inputs) if cfg.memory_format == "channels_last" or cfg.low_res_epochs else []
    if not names:
        return inputs
    out = dict(inputs)
    for k in names:
        x = out[k]
        if epoch < cfg.low_res_epochs and cfg.low_res_side:
            x = _resized(x, cfg.low_res_side)
        if cfg.memory_format == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        out[k] = x
    return out


def _resized(x: torch.Tensor, side: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    scale = side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def _interleaved(steps: dict[str, Step], rounds: int) -> dict[str, float]:
    """Fastest seconds per call of each step, called in interleaved rounds after one warm-up call
    (load bursts from other processes only ever add time, so the minimum is the steadiest)."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {k: min(v) for k, v in times.items()}


def _train_step(model: nn.Module, cfg: TrainConfig, precision: str, device: torch.device, inputs: Inputs,
                targets: torch.Tensor, loss_fn: LossFn, epoch: int = 10**9,
                optimizer: torch.optim.Optimizer | None = None) -> Step:
    """One training step of ``model`` (a copy) as the recipe ``cfg`` would take it."""
    model = model.to(memory_format=torch.channels_last) if cfg.memory_format == "channels_last" else model
    opt = optimizer or make_optimizer(model, cfg)
    scaler = P.make_scaler(precision, device)
    batch = prepare_inputs(inputs, cfg, epoch)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with P.autocast(precision, device):
            out = run_model(model, batch)
        scaler.scale(loss_on_labels(loss_fn, out, targets)).backward()
        scaler.step(opt)
        scaler.update()

    return step


def _caller(fn: Callable[[], Any]) -> Step:
    def call() -> None:
        fn()

    return call


class _Report:
    """The recipe's choices, each with what was measured and why it was (not) taken."""

    def __init__(self) -> None:
        self.choices: dict[str, dict[str, Any]] = {}

    def add(self, name: str, value: Any, reason: str, **measured: Any) -> None:
        self.choices[name] = {"value": value, "reason": reason, **measured}


def plan(model: nn.Module, data: Iterable[Batch], loss_fn: LossFn, cfg: TrainConfig, device: torch.device,
         precision: P.PrecisionChoice, rounds: int = 3) -> tuple[TrainConfig, dict[str, Any]]:
    """The efficient recipe for ``cfg``'s run of ``model`` on ``data``: a concrete TrainConfig and
    the report of what was measured. ``precision`` is the (already measured) precision choice.

    Example:
        >>> from slimkit.core.data import Batches
        >>> from slimkit.train.engine import TrainConfig
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> cfg, report = plan(torch.nn.Linear(4, 2), Batches({"input": x}, y, 16),
        ...                    torch.nn.functional.cross_entropy, TrainConfig(epochs=2, recipe="efficient"),
        ...                    torch.device("cpu"), P.requested("fp32", torch.device("cpu")))
        >>> cfg.warmup_epochs, report["choices"]["memory_format"]["value"]
        (0.2, 'contiguous')
    """
    start = time.perf_counter()
    report = _Report()
    prec = precision.precision
    report.add("precision", prec, precision.reason)
    inputs, targets = first_batch(data)
    with torch.random.fork_rng(devices=[]):  # probing must not consume the run's random streams
        cfg = _memory_format(model, cfg, prec, device, inputs, targets, loss_fn, rounds, report)
        cfg = _optimizer_kernel(model, cfg, prec, device, inputs, targets, loss_fn, rounds, report)
        cfg, per_sample = _batch_size(model, data, cfg, prec, device, inputs, targets, loss_fn, rounds, report)
        cfg = _resizing(model, cfg, prec, device, inputs, targets, loss_fn, rounds, report)
        cfg = _compile(model, data, cfg, prec, device, inputs, targets, loss_fn, per_sample, report)
        cfg = _checkpoint_interval(model, data, cfg, per_sample, targets, report)
    warmup = round(WARMUP_FRACTION * cfg.epochs, 3) if cfg.warmup_epochs == 0 else cfg.warmup_epochs
    cfg = replace(cfg, warmup_epochs=warmup, precision=prec)
    report.add("schedule", f"{cfg.schedule}, {warmup:g} warm-up epochs", "a short linear warm-up lets short runs "
               "train at a high learning rate from the start without diverging, then cosine decay")
    threads = torch.get_num_threads()
    report.add("threads", threads, "intra-op threads = torch's default (the physical cores); batches come from "
               "memory, so no loader workers compete with them" if device.type == "cpu" else "GPU run")
    return cfg, {"choices": report.choices, "probe_seconds": round(time.perf_counter() - start, 3)}


def _memory_format(model: nn.Module, cfg: TrainConfig, prec: str, device: torch.device, inputs: Inputs,
                   targets: torch.Tensor, loss_fn: LossFn, rounds: int, report: _Report) -> TrainConfig:
    if not image_inputs(inputs):
        report.add("memory_format", "contiguous", "no image input (channels_last only changes 4-D tensors)")
        return cfg
    variants = {fmt: replace(cfg, memory_format=fmt) for fmt in ("contiguous", "channels_last")}
    times = _interleaved({fmt: _train_step(copy.deepcopy(model).train(), c, prec, device, inputs, targets, loss_fn)
                          for fmt, c in variants.items()}, rounds)
    gain = times["contiguous"] / times["channels_last"]
    fmt = "channels_last" if gain >= MIN_GAIN else "contiguous"
    report.add("memory_format", fmt, f"channels_last measured {gain:.2f}x contiguous per step",
               gain=round(gain, 3), seconds_per_step={k: round(v, 5) for k, v in times.items()})
    return variants[fmt]


def _optimizer_kernel(model: nn.Module, cfg: TrainConfig, prec: str, device: torch.device, inputs: Inputs,
                      targets: torch.Tensor, loss_fn: LossFn, rounds: int, report: _Report) -> TrainConfig:
    """Only the optimizer's update is timed (one backward fills the gradients both kernels read)."""
    probe = copy.deepcopy(model).train()
    _train_step(probe, cfg, prec, device, inputs, targets, loss_fn)()
    steps: dict[str, Step] = {}
    for kernel in ("foreach", "fused"):
        try:
            opt = make_optimizer(probe, replace(cfg, optimizer_impl=kernel))
            opt.step()
        except (RuntimeError, TypeError) as e:  # no fused kernel for this optimizer, device or dtype
            report.add("optimizer_impl", "foreach", f"fused kernel unavailable: {str(e).splitlines()[0][:120]}")
            return replace(cfg, optimizer_impl="foreach")
        steps[kernel] = _caller(opt.step)
    times = _interleaved(steps, rounds * 2)
    gain = times["foreach"] / times["fused"]
    kernel = "fused" if gain >= MIN_GAIN else "foreach"
    report.add("optimizer_impl", kernel, f"the fused {cfg.optimizer} update measured {gain:.2f}x the foreach one",
               gain=round(gain, 3))
    return replace(cfg, optimizer_impl=kernel)


def _batch_size(model: nn.Module, data: Iterable[Batch], cfg: TrainConfig, prec: str, device: torch.device,
                inputs: Inputs, targets: torch.Tensor, loss_fn: LossFn, rounds: int,
                report: _Report) -> tuple[TrainConfig, float]:
    """Returns the config and the measured seconds per training item at the chosen batch size."""
    n = int(targets.shape[0])
    items = int(getattr(data, "num_items", 0))
    single = _train_step(copy.deepcopy(model).train(), cfg, prec, device, inputs, targets, loss_fn)
    if cfg.batch_size is not None or not hasattr(data, "with_batch_size") or items < 16 * n or cfg.accumulate > 1:
        why = ("set by the user" if cfg.batch_size is not None else
               "kept: too few training items to halve the optimizer steps" if items else "kept: the data's own")
        per_sample = _interleaved({"b": single}, 1)["b"] / n
        report.add("batch_size", cfg.batch_size or n, why)
        return cfg, per_sample
    big = next(iter(data.with_batch_size(2 * n)))
    double = _train_step(copy.deepcopy(model).train(), cfg, prec, device, big[0], big[1], loss_fn)
    times = _interleaved({"single": single, "double": double}, rounds)
    per = {"single": times["single"] / n, "double": times["double"] / int(big[1].shape[0])}
    gain = per["single"] / per["double"]
    if gain >= BATCH_GAIN:
        lr = cfg.lr * math.sqrt(2)
        report.add("batch_size", 2 * n, f"batch {2 * n} measured {gain:.2f}x faster per item than {n}; "
                   f"learning rate scaled by sqrt(2) to {lr:.3g}", gain=round(gain, 3))
        return replace(cfg, batch_size=2 * n, lr=lr), per["double"]
    report.add("batch_size", n, f"batch {2 * n} measured only {gain:.2f}x faster per item than {n} (needs "
               f"{BATCH_GAIN:g}x to repay half the optimizer steps)", gain=round(gain, 3))
    return cfg, per["single"]


def _resizing(model: nn.Module, cfg: TrainConfig, prec: str, device: torch.device, inputs: Inputs,
              targets: torch.Tensor, loss_fn: LossFn, rounds: int, report: _Report) -> TrainConfig:
    names = image_inputs(inputs)
    side = max(inputs[names[0]].shape[-2:]) if names else 0
    if not cfg.progressive_resizing or side < 32 or cfg.epochs < 4:
        # Off unless asked: lower-resolution epochs must still carry the label, which only the task
        # knows (on digits-resnet18 they cost more epochs to 98% than they saved: BENCHMARKS.md).
        why = ("off (progressive_resizing=False)" if not cfg.progressive_resizing else "no image input"
               if not names else f"images of side {side} (< 32)" if side < 32 else "under 4 epochs")
        report.add("progressive_resizing", None, f"not used: {why}")
        return cfg
    low = replace(cfg, low_res_epochs=max(1, cfg.epochs // 4), low_res_side=side // 2)
    probe = copy.deepcopy(model).eval()
    try:
        with torch.no_grad():
            same = run_model(probe, prepare_inputs(inputs, low, 0)).shape == run_model(probe, inputs).shape
    except (RuntimeError, ValueError, SlimkitError) as e:  # fixed-size layers (a flatten into a Linear)
        report.add("progressive_resizing", None, f"not used: the model rejects side {side // 2} "
                   f"({str(e).splitlines()[0][:100]})")
        return cfg
    if not same:
        report.add("progressive_resizing", None, f"not used: the output changes shape at side {side // 2}")
        return cfg
    times = _interleaved({"full": _train_step(copy.deepcopy(model).train(), cfg, prec, device, inputs, targets,
                                              loss_fn),
                          "half": _train_step(copy.deepcopy(model).train(), low, prec, device, inputs, targets,
                                              loss_fn, epoch=0)}, rounds)
    gain = times["full"] / times["half"]
    if gain < RESIZE_GAIN:
        report.add("progressive_resizing", None, f"not used: side {side // 2} measured only {gain:.2f}x faster "
                   f"(needs {RESIZE_GAIN:g}x)", gain=round(gain, 3))
        return cfg
    report.add("progressive_resizing", {"epochs": low.low_res_epochs, "side": side // 2},
               f"the first {low.low_res_epochs} epoch(s) at side {side // 2}, measured {gain:.2f}x faster per "
               f"step than side {side}", gain=round(gain, 3))
    return low


def _compile(model: nn.Module, data: Iterable[Batch], cfg: TrainConfig, prec: str, device: torch.device,
             inputs: Inputs, targets: torch.Tensor, loss_fn: LossFn, per_sample: float,
             report: _Report) -> TrainConfig:
    """torch.compile only where it repays its compilation within the planned run."""
    items = int(getattr(data, "num_items", 0)) or int(targets.shape[0])
    planned = per_sample * items * cfg.epochs
    if planned < COMPILE_MIN_RUN_S:
        report.add("compile", False, f"not tried: the planned run (~{planned:.0f} s of steps) is shorter than the "
                   f"{COMPILE_MIN_RUN_S:.0f} s a compilation must be repaid within", planned_seconds=round(planned))
        return cfg
    eager = _train_step(copy.deepcopy(model).train(), cfg, prec, device, inputs, targets, loss_fn)
    try:
        compiled_model = cast(nn.Module, torch.compile(copy.deepcopy(model).train()))
        compiled = _train_step(compiled_model, cfg, prec, device, inputs, targets, loss_fn)
        t0 = time.perf_counter()
        compiled()  # the first call compiles
        compile_s = time.perf_counter() - t0
        times = _interleaved({"eager": eager, "compiled": compiled}, 3)
    except Exception as e:  # noqa: BLE001 - any failure to compile means: train eagerly
        report.add("compile", False, f"torch.compile failed: {str(e).splitlines()[0][:120]}")
        return cfg
    gain = times["eager"] / times["compiled"]
    saved = planned * (1 - 1 / gain)
    take = gain >= MIN_GAIN and saved > 2 * compile_s
    report.add("compile", take, f"compiled steps measured {gain:.2f}x eager; compiling took {compile_s:.0f} s "
               f"against ~{saved:.0f} s saved over the run", gain=round(gain, 3), compile_seconds=round(compile_s, 1))
    return replace(cfg, compile=take)


def _checkpoint_interval(model: nn.Module, data: Iterable[Batch], cfg: TrainConfig, per_sample: float,
                         targets: torch.Tensor, report: _Report) -> TrainConfig:
    """Checkpoint every k epochs so writing them costs at most CHECKPOINT_SHARE of the time (one write of
    ResNet-18 with AdamW's state took ~1 s here against 4.5 s epochs); the last epoch always is."""
    import tempfile

    from slimkit.train import checkpoint as ckpt

    if cfg.checkpoint_dir is None:
        return cfg
    params = [p.detach() for p in model.parameters() if p.requires_grad]
    moments = 2 if cfg.optimizer == "adamw" else 1  # the optimizer's state: AdamW keeps two per weight
    near = Path(cfg.checkpoint_dir).parent  # the same disk as the real checkpoints, where it exists
    with tempfile.TemporaryDirectory(dir=near if near.is_dir() else None) as tmp:
        start = time.perf_counter()
        ckpt.save(Path(tmp), 1, model, {"optimizer": [torch.zeros_like(p) for p in params for _ in range(moments)]})
        write_s = time.perf_counter() - start
    epoch_s = per_sample * (int(getattr(data, "num_items", 0)) or int(targets.shape[0]))
    every = max(cfg.checkpoint_every, math.ceil(write_s / (CHECKPOINT_SHARE * max(epoch_s, 1e-9))))
    every = min(every, max(1, cfg.epochs))
    report.add("checkpoint_every", every, f"a checkpoint write measured {write_s:.2f} s against ~{epoch_s:.1f} s "
               f"epochs: every {every} epoch(s) keeps writing under {CHECKPOINT_SHARE:.0%} of the time (the "
               "last epoch and a stop are always saved)", write_seconds=round(write_s, 3))
    return replace(cfg, checkpoint_every=every)


RESOLVED = ("checkpoint_every", "batch_size", "lr", "precision", "memory_format", "optimizer_impl", "compile",
            "low_res_epochs", "low_res_side", "warmup_epochs")


def save(folder: Path, cfg: TrainConfig, report: dict[str, Any]) -> None:
    """Keep the resolved recipe beside the checkpoints: a resumed run must train as it started."""
    from slimkit.core.files import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / RECIPE_FILE, {"config": {k: getattr(cfg, k) for k in RESOLVED}, "report": report})


def load(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The resolved settings and report of a run planned before, if its folder holds them."""
    try:
        raw = json.loads((folder / RECIPE_FILE).read_text())
        return {k: raw["config"][k] for k in RESOLVED}, raw["report"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
