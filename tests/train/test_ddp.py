"""DDP parity: 2 gloo processes on CPU end with the parameters of 1 process on the same
global batch. Not marked slow: it must run in CI (a tiny model, a few seconds)."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.train import _ddp_worker as worker


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_process_ddp_matches_one_process(tmp_path, accumulate: int) -> None:
    single = tmp_path / "single.safetensors"
    importlib.import_module("torch._dynamo")  # DDP imports it: once here instead of in each child

    worker.train(0, 1, "", str(single), accumulate=accumulate)
    double = tmp_path / "ddp.safetensors"
    # spawn, not fork: a test process that ran quantization-aware training before (any order of the
    # suite) holds autograd threads, and a forked child then refuses to run backward.
    mp.start_processes(worker.train, args=(2, str(tmp_path / "rdv"), str(double), accumulate), nprocs=2, join=True,
                       start_method="spawn")
    a, b = load_file(str(single)), load_file(str(double))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5), k
