"""Run by tests/train/test_ddp.py in each spawned process (importable, so spawn can find it)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Batches


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def make_data(global_batch: int) -> Batches:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(48, 6, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    return Batches({"input": x}, y, batch_size=global_batch, shuffle=True, seed=1)


def train(rank: int, world: int, init_file: str, out: str, accumulate: int) -> None:
    from slimkit.train import TrainConfig, fit

    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = make_model()
    cfg = TrainConfig(epochs=3, lr=0.05, optimizer="sgd", accumulate=accumulate, grad_clip=1.0)
    result = fit(model, make_data(8), F.cross_entropy, cfg)
    if rank == 0:
        from safetensors.torch import save_file

        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        state["losses"] = torch.tensor([r["loss"] for r in result.history])
        save_file(state, out)
    if world > 1:
        dist.destroy_process_group()
