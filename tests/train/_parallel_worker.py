"""Run by tests/train/test_parallel.py in spawned processes: FSDP2 and pipeline stages on gloo."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def make_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def reference(steps: int = 3) -> dict[str, torch.Tensor]:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = make_batch()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def fsdp(rank: int, world: int, init_file: str, out: str, steps: int = 3) -> None:
    from safetensors.torch import save_file

    from slimkit.train.distributed import fsdp_shard, full_state_dict

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = fsdp_shard(make_model(), blocks=nn.Linear)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = make_batch()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x[rank::world]), y[rank::world]).backward()
        opt.step()
    state = full_state_dict(model)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in state.items()}, out)
    dist.destroy_process_group()


def pipeline(rank: int, world: int, init_file: str, out: str, steps: int = 3) -> None:
    from safetensors.torch import save_file

    from slimkit.train.distributed import pipeline_step

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    full = make_model()
    stages = nn.Sequential(nn.Sequential(full[0], full[1]), nn.Sequential(full[2]))
    x, y = make_batch()
    stage = stages[rank]
    opt = torch.optim.SGD(stage.parameters(), lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        # The schedule averages the micro-batches' gradients (scale_grads), like one full batch.
        stage, _loss = pipeline_step(stages, x, y, F.cross_entropy, 2, torch.device("cpu"))
        opt.step()
    save_file({k: v.detach().contiguous() for k, v in stage.state_dict().items()}, f"{out}.{rank}")
    dist.destroy_process_group()
