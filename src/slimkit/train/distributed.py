"""Data and model parallelism on torch.distributed, started by ``torchrun``.

* DDP (data parallel): each process trains a full copy on its share of every global batch;
  gradients are averaged, so N processes with per-process batch B/N follow the same path as
  one process with batch B (``tests/train/test_ddp.py`` checks this on CPU with gloo).
* FSDP (``fully_shard``, FSDP2): parameters, gradients and optimizer state sharded across
  processes. Runs on CPU with gloo in this torch (tested); its point is memory on GPUs.
* Pipeline stages (``torch.distributed.pipelining``): a sequential model cut into stages, one
  per process, micro-batches flowing through a GPipe schedule. Runs on CPU with gloo in this
  torch for ``nn.Sequential`` models (tested); on GPU it needs one device per stage.

The process group comes from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...): gloo on CPU, nccl on GPU. No home-made launcher.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from slimkit.core.data import Batch


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def context() -> DistContext:
    """The current process group's rank and size."""
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistContext()


def init_from_env(device: str = "cpu") -> DistContext:
    """Join the process group torchrun described in the environment (no-op when not under torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return context()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class ShardedBatches:
    """Each process's share of every global batch: rows ``rank, rank + world, ...``.

    The global batches are exactly the ones one process would see (same shuffle, same order),
    so averaging gradients over ranks reproduces single-process training. Global batches with
    fewer rows than processes are skipped (every rank must take part in every step).

    Example:
        >>> import torch
        >>> from slimkit.core.data import Batches
        >>> data = Batches({"x": torch.arange(8.0)}, torch.arange(8), batch_size=4)
        >>> [t.tolist() for _, t in ShardedBatches(data, rank=1, world=2)]
        [[1, 3], [5, 7]]
    """

    def __init__(self, data: Any, rank: int, world: int) -> None:
        self.data, self.rank, self.world = data, rank, world

    def __len__(self) -> int:
        n, bs = self.data.num_items, self.data.batch_size
        full = len(self.data) - 1
        last = n - full * bs
        return full + (1 if last >= self.world else 0)

    def set_epoch(self, epoch: int) -> None:
        set_epoch(self.data, epoch)

    def __iter__(self) -> Iterator[Batch]:
        for inputs, targets in self.data:
            if targets.shape[0] < self.world:
                continue
            yield {k: v[self.rank :: self.world] for k, v in inputs.items()}, targets[self.rank :: self.world]


def set_epoch(data: Any, epoch: int) -> None:
    """Make ``data``'s shuffle order a function of the epoch (needed for resume and DDP)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    elif hasattr(data, "_epoch"):  # slimkit.core.data.Batches draws its order from this counter
        data._epoch = epoch


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` (broadcasts rank 0's weights on creation)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s value of a small picklable object on every rank (identity when alone)."""
    if not context().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def fsdp_shard(model: nn.Module, *, blocks: type[nn.Module] | tuple[type[nn.Module], ...] | None = None) -> nn.Module:
    """Shard ``model`` with FSDP2 (``fully_shard``): each block of type ``blocks``, then the root.

    Call inside an initialized process group. On CPU with gloo this runs (useful for tests
    and for models that do not fit one host's memory budget per process); the memory payoff
    is on GPUs with nccl. Parameters become DTensors: save with ``full_state_dict``.
    """
    from torch.distributed.fsdp import fully_shard

    if blocks is not None:
        for m in list(model.modules()):
            if isinstance(m, blocks) and m is not model:
                fully_shard(m)
    fully_shard(model)
    return model


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded state dict of an FSDP2 model (gathers DTensors), identical on every rank."""
    out = {}
    for k, v in model.state_dict().items():
        out[k] = v.full_tensor() if hasattr(v, "full_tensor") else v
    return out


def pipeline_step(stages: nn.Sequential, inputs: torch.Tensor | None, targets: torch.Tensor | None,
                  loss_fn: Any, n_microbatches: int, device: torch.device) -> tuple[nn.Module, Any]:
    """Run one GPipe forward/backward of ``stages[rank]`` (one stage per process).

    Rank 0 feeds ``inputs``; the last rank gets ``targets`` and computes the loss; the
    returned module is this rank's stage, whose gradients are ready for its optimizer.
    Returns (stage module, loss or None).
    """
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    ctx = context()
    if len(stages) != ctx.world:
        raise ValueError(f"{len(stages)} stages for {ctx.world} processes: need one stage per process")
    module = stages[ctx.rank].to(device)
    stage = PipelineStage(module, ctx.rank, ctx.world, device)
    schedule = ScheduleGPipe(stage, n_microbatches=n_microbatches, loss_fn=loss_fn)
    losses: list[torch.Tensor] = []
    if ctx.rank == 0:
        schedule.step(inputs)
    elif ctx.rank == ctx.world - 1:
        schedule.step(target=targets, losses=losses)
    else:
        schedule.step()
    return module, (torch.stack(losses).mean() if losses else None)
