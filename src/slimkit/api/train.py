"""``slimkit train``: train a task's model with the engine; metrics, precision and weights in a folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.files import atomic_path, atomic_write_json, atomic_write_text
from slimkit.core.task import Task
from slimkit.errors import SlimkitError, UsageError, shown
from slimkit.pipeline import check_seed, claim_out, refusal_leaves_no_folder
from slimkit.tasks import load_task
from slimkit.tasks._loader import task_key
from slimkit.train import checkpoint as ckpt
from slimkit.train import distributed as D
from slimkit.train.engine import TrainConfig, TrainResult, fit


def reinit(model: nn.Module, seed: int) -> nn.Module:
    """Fresh, seeded weights for every layer that can reset itself (training from scratch)."""
    torch.manual_seed(seed)
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


def fresh_model(task: Task, seed: int) -> nn.Module:
    """An untrained copy of the task's architecture (its ``fresh_model`` factory when it has one)."""
    torch.manual_seed(seed)
    factory = getattr(task, "fresh_model", None)
    if factory is not None:
        return factory().train()
    return reinit(task.build_model(), seed).train()


class MetricsLog:
    """metrics.jsonl (one JSON object per epoch), and TensorBoard events when tensorboard is installed."""

    def __init__(self, out: Path, resume_epoch: int = 0) -> None:
        self.path = out / "metrics.jsonl"
        kept = []
        if resume_epoch and self.path.exists():  # drop epochs the checkpoint does not cover
            kept = [ln for ln in self.path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= resume_epoch]
        atomic_write_text(self.path, "".join(ln + "\n" for ln in kept))
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional
            pass

    def __call__(self, epoch: int, row: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    self.writer.add_scalar(f"train/{k}", v, epoch)
            self.writer.flush()


@dataclass(frozen=True)
class _Settings:
    """The knobs a run keeps across ``--resume`` (settings.json)."""

    epochs: int
    lr: float
    precision: str
    batch_size: int | None
    recipe: str = "efficient"
    progressive_resizing: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"lr": self.lr, "precision": self.precision, "batch_size": self.batch_size, "epochs": self.epochs,
                "recipe": self.recipe, "progressive_resizing": self.progressive_resizing}


@refusal_leaves_no_folder
def fit_task(
    task: str | Task = "digits-cnn",
    *,
    out: str | Path,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    precision: str | None = None,
    resume: bool = False,
    scratch: bool = False,
    seed: int = 0,
    nproc: int = 1,
    config: TrainConfig | None = None,
    progress: bool = False,
    until: float | None = None,
    price_per_core_hour: float | None = None,
    nnodes: int = 1,
    node_rank: int = 0,
    rdzv_endpoint: str | None = None,
    recipe: str | None = None,
    progressive_resizing: bool | None = None,
) -> TrainResult:
    """Train a task's model; write ``out/{metrics.jsonl, precision.json, train.json, model.safetensors}``.

    ``scratch`` re-initializes the task's model first (else training continues from its
    weights, e.g. a fine-tune of a pretrained model). ``nproc > 1`` relaunches this under
    ``torchrun`` with DDP (gloo on CPU, nccl on GPU). ``config`` overrides every knob.
    ``epochs`` defaults to 10, ``lr`` to 1e-3, ``precision`` to "auto" and ``recipe`` to "efficient" (the
    memory format, optimizer kernel, batch size, compilation and warm-up measured on this host, see
    :mod:`slimkit.train.recipe`; "plain" takes the settings as given); with ``resume`` they (and
    ``batch_size``) default to the run's own. A different lr, precision or batch size on resume is an
    error (a resumed run keeps its settings); more epochs extend the run, and the learning-rate
    schedule then spans the new total (``result.notes`` says how far the learning rate moved).

    Example:
        >>> import tempfile
        >>> r = fit_task("digits-cnn", out=tempfile.mkdtemp(), epochs=1, precision="fp32", scratch=True)
        >>> r.precision.precision, len(r.history)
        ('fp32', 1)
    """
    check_seed(seed)
    for name, value in (("until", until), ("price_per_core_hour", price_per_core_hour)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or (name != "until" and value < 0)):
            raise UsageError(f"{name} must be a finite number{' >= 0' if name != 'until' else ''}, got {value!r}")
    if nproc < 1:
        raise UsageError(f"nproc must be >= 1, got {nproc}")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise UsageError(f"batch size must be a whole number >= 1, got {shown(batch_size)}")
    if batch_size and batch_size < nproc:
        # Each process takes its share of a global batch: with fewer rows than processes every
        # batch was skipped and the run "trained" zero steps.
        raise UsageError(f"batch size {batch_size} is smaller than the {nproc} processes sharing each batch",
                         hint=f"use --batch-size {nproc} or more, or fewer processes")
    launcher = int(os.environ.get("WORLD_SIZE", "1")) == 1  # not one of torchrun's workers
    # torchrun's workers write into the folder their launcher claimed (and holds locked).
    out = claim_out(out, "train", lock=launcher)
    _check_checkpoints(out, resume, launcher)
    if epochs is not None and (not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1):
        raise UsageError(f"epochs must be a whole number >= 1, got {epochs!r}")
    key = task_key(task) if isinstance(task, str) else task.name
    if recipe is not None and recipe not in ("efficient", "plain"):
        raise UsageError(f"unknown recipe {recipe!r}", hint="use 'efficient' (measured on this host) or 'plain'")
    given: dict[str, Any] = {"lr": lr, "precision": precision, "batch_size": batch_size, "recipe": recipe,
                             "progressive_resizing": progressive_resizing}
    settings = _settings(out, key, epochs, given, resumed=resume and launcher)
    out.mkdir(parents=True, exist_ok=True)
    if launcher:  # epochs as last asked: a later plain --resume finishes the run it extended
        atomic_write_json(out / "settings.json", {**settings.to_dict(), "task": key})
    nodes = _check_nodes(nnodes, node_rank, rdzv_endpoint)
    if (nproc > 1 or nodes) and launcher:
        return _launch(nproc, task, out, nodes, dict(**settings.to_dict(), resume=resume, scratch=scratch, seed=seed,
                                              progress=progress, until=until, price_per_core_hour=price_per_core_hour))
    return _train_here(task, out, settings, config, resume=resume, scratch=scratch, seed=seed, progress=progress,
                       until=until, price=price_per_core_hour)


def _check_checkpoints(out: Path, resume: bool, launcher: bool) -> None:
    """``resume`` needs a checkpoint in ``out``; a fresh run must not start over an existing one."""
    if resume and ckpt.latest(out / "checkpoints") is None:
        raise UsageError(f"nothing to resume in {out}: no complete checkpoint in {out / 'checkpoints'}",
                         hint="run without --resume to start training there")
    if launcher and not resume and ckpt.latest(out / "checkpoints") is not None:
        # A fresh run there overwrote metrics and model and left the old run's later checkpoints.
        raise UsageError(f"{out} already holds a training run", hint="pass --resume to continue it, or "
                         "choose another --out")


def _settings(out: Path, key: str, epochs: int | None, given: dict[str, Any], *, resumed: bool) -> _Settings:
    """The run's settings: as ``given`` with the defaults filled in, or (``resumed``) the stored run's."""
    if resumed:
        stored_task = _stored(out).get("task")
        if stored_task is not None and stored_task != key:
            # The checkpoint was loaded into the other task's model: a wall of mismatched weight names.
            raise UsageError(f"{out} holds a training run of task {stored_task}, not {key}",
                             hint=f"resume with --task {stored_task}, or train {key} into another --out")
        given = _resumed_settings(out, given)
        latest = ckpt.latest(out / "checkpoints")
        done = int(latest.name.split("-")[1]) if latest is not None else 0
        if epochs is not None and epochs < done:
            # It printed "nothing to train", a bogus schedule note, and stored the smaller count.
            raise UsageError(f"--epochs {epochs} is fewer than the {done} epoch(s) this run has trained",
                             hint=f"resume with --epochs {done} or more, or leave --epochs out")
        epochs = epochs or _stored(out).get("epochs")
    # A run from before recipes resumes as it trained: plainly.
    return _Settings(epochs=epochs or 10, lr=1e-3 if given["lr"] is None else given["lr"],
                     precision=given["precision"] or "auto", batch_size=given["batch_size"],
                     recipe=given["recipe"] or ("plain" if resumed else "efficient"),
                     progressive_resizing=bool(given["progressive_resizing"]))


def _train_here(task: str | Task, out: Path, settings: _Settings, config: TrainConfig | None, *, resume: bool,
                scratch: bool, seed: int, progress: bool, until: float | None = None,
                price: float | None = None) -> TrainResult:
    """Train in this process (alone, or as one torchrun worker); rank 0 writes the outputs."""
    cfg = config or TrainConfig(epochs=settings.epochs, lr=settings.lr, batch_size=settings.batch_size,
                                precision=settings.precision, seed=seed, recipe=settings.recipe,
                                progressive_resizing=settings.progressive_resizing)
    cfg = TrainConfig(**{**cfg.to_dict(), "checkpoint_dir": str(out / "checkpoints"), "resume": resume,
                         **({"until": until} if until is not None else {})})
    ctx = D.init_from_env(cfg.device)
    task_obj = load_task(task, seed=seed)
    model = fresh_model(task_obj, seed) if scratch else task_obj.build_model()
    found = ckpt.latest(out / "checkpoints") if resume else None
    log = MetricsLog(out, int(found.name.split("-")[1]) if found else 0) if ctx.is_main else None
    result = fit(model, task_obj.train_data, task_obj.loss, cfg, eval_data=task_obj.eval_data,
                 metric=task_obj.metric, progress=progress, on_epoch=log)
    if ctx.is_main:
        _write_outputs(out, task_obj, model, cfg, result, ctx.world, price)
    return result


def _resumed_settings(out: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The stored run's lr/precision/batch size; one given differently is an error (it was silently
    ignored while train.json recorded it as used)."""
    stored = _stored(out)
    if not stored:  # a run from before settings.json: nothing to compare with
        return given
    changed = [f"{k} {v!r} (stored: {stored.get(k)!r})" for k, v in given.items()
               if v is not None and v != stored.get(k)]
    if changed:
        raise UsageError(f"--resume continues the run in {out} with its own settings; these differ: "
                         f"{'; '.join(changed)}", hint="leave them out to resume, or start a new run in another --out")
    return {k: stored.get(k) for k in given}


def _stored(out: Path) -> dict[str, Any]:
    path = out / "settings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _write_outputs(out: Path, task: Task, model: nn.Module, cfg: TrainConfig, result: TrainResult,
                   world: int, price: float | None = None) -> None:
    from safetensors.torch import save_file

    assert result.precision is not None
    atomic_write_json(out / "precision.json", result.precision.to_dict())
    with atomic_path(out / "model.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))
    last = result.history[-1] if result.history else {}
    atomic_write_json(out / "train.json", {
        "task": task.name, "config": cfg.to_dict(), "processes": world, "precision": result.precision.precision,
        "metric": {"name": task.metric.name, "value": last.get(task.metric.name), "best": result.best_metric},
        "seconds": round(result.seconds, 3), "resumed_from_epoch": result.resumed_from,
        "stopped_early": result.stopped_early, "notes": result.notes, "history": result.history,
        **({"recipe": result.recipe} if result.recipe is not None else {}),
        **({"until": time_to_metric(cfg, result, task.metric.name, world, price)} if cfg.until is not None else {}),
    })


def time_to_metric(cfg: TrainConfig, result: TrainResult, metric: str, world: int,
                   price: float | None) -> dict[str, Any]:
    """Training measured as time to accuracy (DAWNBench's measure): when the metric reached ``until``,
    the epochs and training items it took, and the core-hours spent (threads x processes x time),
    priced where a price per core-hour is given.

    Example:
        >>> r = TrainResult(reached={"epoch": 3, "seconds": 36.0, "samples": 3000})
        >>> time_to_metric(TrainConfig(until=98.0), r, "accuracy", 1, 0.05)["cost"] > 0
        True
    """
    cores = torch.get_num_threads() * world
    reached = result.reached
    seconds = reached["seconds"] if reached else result.seconds
    core_hours = seconds * cores / 3600
    return {"metric": metric, "value": cfg.until, "reached": reached is not None,
            "time_to_metric_s": reached["seconds"] if reached else None,
            "epochs": int(reached["epoch"]) if reached else None,
            "samples": int(reached["samples"]) if reached else None,
            "cores": cores, "core_hours": round(core_hours, 6),
            "price_per_core_hour": price, "cost": round(core_hours * price, 6) if price is not None else None}


def _relay(stream: Any, stopping: threading.Event) -> None:
    for line in iter(stream.readline, b""):
        if not stopping.is_set():
            sys.stderr.buffer.write(line)
            sys.stderr.flush()


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to torchrun's process group (it passes it to its workers), SIGKILL after 15 s."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _check_nodes(nnodes: int, node_rank: int, endpoint: str | None) -> list[str]:
    """torchrun's options for training across machines (c10d rendezvous), [] for one machine."""
    for name, value, low in (("nnodes", nnodes, 1), ("node_rank", node_rank, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"{name} must be a whole number >= {low}, got {value!r}")
    if nnodes == 1:
        if endpoint is not None or node_rank:
            raise UsageError("--rdzv-endpoint and --node-rank go with --nnodes 2 or more")
        return []
    host, _, port = (endpoint or "").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (the first node's address), got "
                         f"{endpoint!r}", hint="e.g. --rdzv-endpoint node0.cluster:29400, the same on every node")
    if node_rank >= nnodes:
        raise UsageError(f"--node-rank {node_rank} is not below --nnodes {nnodes}")
    return [f"--nnodes={nnodes}", f"--node-rank={node_rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
            "--rdzv-id=slimkit-train"]


def _launch(nproc: int, task: str | Task, out: Path, nodes: list[str], kwargs: dict[str, Any]) -> TrainResult:
    """Run this command again under torchrun with ``nproc`` processes (on each of the ``nodes``);
    read back what rank 0 wrote (on the node that holds it)."""
    if not isinstance(task, str):
        raise UsageError("nproc > 1 needs a task name or path/to/file.py:function",
                         hint="each process loads the task itself; a Task object cannot be passed to it")
    spec = json.dumps({"task": task, "out": str(out), **kwargs})
    cmd = [sys.executable, "-m", "torch.distributed.run", *(nodes or ["--standalone"]), f"--nproc-per-node={nproc}",
           "-m", "slimkit.api._train_worker", spec]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    # A session of its own: a terminal's Ctrl-C reaches only this process (no traceback from every
    # rank), and stopping this process for any reason (Ctrl-C, SIGTERM) stops torchrun and its
    # workers too; before, they went on training after the command said "interrupted".
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.PIPE)
    stopping = threading.Event()
    # Workers' messages pass through as they come; once this command stops them, the tracebacks
    # torchrun and every rank print on the way down are not the user's concern and are dropped.
    relay = threading.Thread(target=_relay, args=(proc.stderr, stopping), daemon=True)
    relay.start()
    # SIGTERM's default action would end this process without running the clean-up below.
    previous = signal.signal(signal.SIGTERM, lambda sig, _frame: sys.exit(128 + sig)) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        code = proc.wait()
    finally:
        if proc.poll() is None:
            stopping.set()
            _stop_group(proc)
        relay.join(timeout=5)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if code != 0:
        raise SlimkitError(f"torchrun with {nproc} processes failed (exit {code})",
                           hint="see the messages above; try --nproc 1 to check the task trains at all")
    from slimkit.train.precision import PrecisionChoice

    if not (out / "train.json").is_file():  # another node held rank 0: the outputs are in its --out
        return TrainResult(notes=["this node trained as part of the group; rank 0's node wrote the outputs"])
    info = json.loads((out / "train.json").read_text())
    return TrainResult(history=info["history"], seconds=info["seconds"],
                       precision=PrecisionChoice(**json.loads((out / "precision.json").read_text())),
                       best_metric=info["metric"]["best"], stopped_early=info["stopped_early"],
                       resumed_from=info["resumed_from_epoch"], notes=info.get("notes", []))
