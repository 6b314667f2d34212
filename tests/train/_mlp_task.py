"""A BatchNorm-free digits classifier (an MLP): data-parallel training on CPU matches one process
exactly only without BatchNorm, whose statistics each process takes on its share of the batch
(SyncBatchNorm is CUDA-only)."""

from __future__ import annotations

import torch
from torch import nn

import slimkit


def task() -> slimkit.Task:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    train, test = order[:1400], order[1400:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    return slimkit.Task("digits-mlp", model, train_data=slimkit.Batches({"input": x[train]}, y[train], batch_size=64,
                                                                        shuffle=True, seed=0),
                        eval_data=slimkit.Batches({"input": x[test]}, y[test], batch_size=128))
