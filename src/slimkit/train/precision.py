"""Mixed precision: fp32, bf16 autocast, fp16 autocast with gradient scaling, and ``auto``.

``auto`` times a few real training steps of the actual model and batch in each precision
the hardware offers and keeps the fastest one that stays numerically stable. The rule that
matters: it never picks a precision slower than fp32. On CPUs without fast bf16 units bf16
autocast trains slower than fp32 (BENCHMARKS.md), so auto must keep fp32 there; a
lower precision has to be clearly faster (``min_speedup``) before it is worth its rounding.
"""

from __future__ import annotations

import contextlib
import copy
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class PrecisionChoice:
    """The precision training runs in, and why (what ``auto`` measured, seconds per step)."""

    precision: str
    requested: str
    reason: str
    measured: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "requested": self.requested, "reason": self.reason,
                "measured": self.measured}


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])


def make_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """fp16 needs loss scaling against gradient underflow; other precisions get a disabled scaler."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def available(device: torch.device) -> list[str]:
    """Precisions worth timing on this device (fp32 first).

    Example:
        >>> available(torch.device("cpu"))[0]
        'fp32'
    """
    if device.type == "cuda":
        out = ["fp32", "fp16"]
        if torch.cuda.is_bf16_supported():
            out.insert(1, "bf16")
        return out
    out = ["fp32", "bf16"]  # bf16 autocast runs on any CPU (natively with AVX512-BF16/AMX)
    amx_fp16 = getattr(torch.cpu, "_is_amx_fp16_supported", None)
    if amx_fp16 is not None and amx_fp16():  # fp16 on CPU is emulated (slow) without AMX-FP16
        out.append("fp16")
    return out


def choose(seconds_per_step: dict[str, float], first_loss: dict[str, float], finite: dict[str, bool], *,
           min_speedup: float = 1.05, rtol: float = 0.05,
           median_seconds: dict[str, float] | None = None) -> PrecisionChoice:
    """Pick from measurements (pure, so the rule is testable with made-up timings).

    A candidate must be finite, match fp32's loss on the same weights and batch within
    ``rtol``, and be at least ``min_speedup`` times as fast as fp32, by the fastest round
    and (when given) by the median round too: on a shared machine the two can disagree, and
    a disagreement keeps fp32. Otherwise fp32 stays.

    Example:
        >>> choose({"fp32": 1.0, "bf16": 1.35}, {"fp32": 2.3, "bf16": 2.3}, {"fp32": True, "bf16": True}).precision
        'fp32'
        >>> choose({"fp32": 1.0, "bf16": 0.5}, {"fp32": 2.3, "bf16": 2.31}, {"fp32": True, "bf16": True}).precision
        'bf16'
    """
    base = seconds_per_step["fp32"]
    measured: dict[str, dict[str, Any]] = {}
    best, best_speed = "fp32", 1.0
    for name, sec in seconds_per_step.items():
        speedup = base / sec if sec > 0 else 0.0
        stable = finite.get(name, False) and abs(first_loss[name] - first_loss["fp32"]) <= (
            rtol * abs(first_loss["fp32"]) + 1e-3)
        measured[name] = {"seconds_per_step": round(sec, 6), "speedup_vs_fp32": round(speedup, 4),
                          "first_loss": round(first_loss[name], 6), "stable": bool(stable)}
        by_median = speedup
        if median_seconds is not None:
            by_median = median_seconds["fp32"] / median_seconds[name] if median_seconds[name] > 0 else 0.0
            measured[name]["median_seconds_per_step"] = round(median_seconds[name], 6)
            measured[name]["median_speedup_vs_fp32"] = round(by_median, 4)
        if name != "fp32" and stable and min(speedup, by_median) >= min_speedup and speedup > best_speed:
            best, best_speed = name, speedup
    if best == "fp32":
        others = ", ".join(f"{n} {m['speedup_vs_fp32']:.2f}x"
                           + (f" (median {m['median_speedup_vs_fp32']:.2f}x)" if "median_speedup_vs_fp32" in m else "")
                           + ("" if m["stable"] else " unstable")
                           for n, m in measured.items() if n != "fp32")
        reason = f"no precision was >= {min_speedup:.2f}x faster than fp32 and stable ({others or 'none other'})"
    else:
        reason = f"{best} measured {best_speed:.2f}x fp32 throughput with a stable loss"
    return PrecisionChoice(best, "auto", reason, measured)


def _step(model: nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, precision: str,
          device: torch.device, inputs: dict, targets: torch.Tensor,
          forward_loss: Callable[[nn.Module, dict, torch.Tensor], torch.Tensor]) -> float:
    opt.zero_grad(set_to_none=True)
    with autocast(precision, device):
        loss = forward_loss(model, inputs, targets)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return float(loss.detach())


@contextlib.contextmanager
def _quiet_rng() -> Iterator[None]:
    # Probing must not consume the random stream the real run uses (dropout, init).
    with torch.random.fork_rng(devices=[]):
        yield


def probe(model: nn.Module, make_opt: Callable[[nn.Module], torch.optim.Optimizer], inputs: dict,
          targets: torch.Tensor, forward_loss: Callable[[nn.Module, dict, torch.Tensor], torch.Tensor],
          device: torch.device, *, candidates: list[str] | None = None, warmup: int = 1, steps: int = 1,
          rounds: int = 4, min_speedup: float = 1.05, drop_margin: float = 1.25) -> PrecisionChoice:
    """Time real training steps of copies of ``model`` on one batch in each precision; choose.

    Rounds interleave the precisions so a burst of load on a shared machine hits them all.
    The model itself is not touched. A precision slower than fp32 by more than ``drop_margin``
    after a round is not timed further (the probe ends once only fp32 is left).
    """
    candidates = candidates or available(device)
    copies, opts, scalers, first, finite = {}, {}, {}, {}, {}
    times: dict[str, list[float]] = {}
    with _quiet_rng():
        for name in candidates:
            copies[name] = copy.deepcopy(model).train()
            opts[name] = make_opt(copies[name])
            scalers[name] = make_scaler(name, device)
            losses = [_step(copies[name], opts[name], scalers[name], name, device, inputs, targets, forward_loss)
                      for _ in range(warmup)]
            first[name] = losses[0] if losses else float("nan")
            finite[name] = all(torch.isfinite(torch.tensor(losses)).tolist())
            times[name] = []
        live = list(candidates)
        for done in range(1, rounds + 1):
            for name in live:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                for _ in range(steps):
                    loss = _step(copies[name], opts[name], scalers[name], name, device, inputs, targets,
                                 forward_loss)
                    finite[name] = finite[name] and bool(torch.isfinite(torch.tensor(loss)))
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times[name].append((time.perf_counter() - start) / steps)
            # Stop timing a precision that is far behind fp32 (a swing of > drop_margin would be
            # needed to qualify): most of the probe's cost is spent on the loser otherwise. Not after
            # one round: a burst of load on one step once made bf16 read 0.36x fp32 (2.4x idle).
            if done < 2:
                continue
            live = ["fp32"] + [n for n in live if n != "fp32" and min(times[n]) * min_speedup
                               <= min(times["fp32"]) * drop_margin]
            if live == ["fp32"]:
                break
    # Load bursts on a shared machine only ever add time, so the fastest round is the steadiest
    # estimate; the median must agree before a lower precision replaces fp32.
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    choice = choose(best, first, finite, min_speedup=min_speedup, median_seconds=median)
    choice.measured["_probe"] = {"warmup_steps": warmup, "steps_per_round": steps,
                                 "rounds": {n: len(t) for n, t in times.items()},
                                 "batch": int(targets.shape[0]), "device": str(device), "statistic": "min"}
    return choice


def _cache_file() -> Path:
    from slimkit.core.cache import cache_dir

    return cache_dir() / "precision-choices.json"


def choice_key(model: nn.Module, inputs: dict, device: torch.device) -> str:
    """What a measured choice depends on: architecture, input shapes, device, CPU, threads, torch."""
    from slimkit.measure.env import cpu_info  # not environment(): that imports every optional backend

    cpu = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_info()["model"]
    params = sum(p.numel() for p in model.parameters())
    shapes = {k: list(v.shape) for k, v in inputs.items()}
    return json.dumps([type(model).__name__, params, shapes, str(device), cpu,
                       torch.get_num_threads(), torch.__version__], sort_keys=True)


def cached(key: str) -> PrecisionChoice | None:
    """A choice measured before for the same ``key`` (the probe costs a few training steps)."""
    try:
        raw = json.loads(_cache_file().read_text()).get(key)
    except (OSError, ValueError):
        return None
    return PrecisionChoice(**raw) if raw else None


def remember(key: str, choice: PrecisionChoice) -> None:
    from slimkit.core.files import atomic_write_json

    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = {**choice.to_dict(), "reason": choice.reason + " (measured earlier on this machine)"}
    atomic_write_json(_cache_file(), data)


def requested(precision: str, device: torch.device) -> PrecisionChoice:
    """A fixed precision, checked against what the device can run."""
    from slimkit.errors import UsageError

    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'", hint="use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        # Works, but CPU fp16 is emulated on most parts: allow it, say so.
        return PrecisionChoice(precision, precision, "requested (fp16 on CPU is usually emulated and slow)")
    return PrecisionChoice(precision, precision, "requested")
