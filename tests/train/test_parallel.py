"""Model parallelism on CPU with gloo: FSDP2 sharding and two pipeline stages match one process."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.train import _parallel_worker as worker


def _run(fn, tmp_path, name: str) -> None:  # noqa: ANN001
    # spawn, not fork: after the suite's quantization-aware training, this process holds autograd
    # threads and forked children refuse to run backward.
    mp.start_processes(fn, args=(2, str(tmp_path / f"rdv-{name}"), str(tmp_path / name)), nprocs=2, join=True,
                       start_method="spawn")


@pytest.mark.slow  # FSDP2 imports torch._dynamo in each process: ~10 s on 2 shared cores
def test_fsdp_two_shards_match_one_process(tmp_path) -> None:
    _run(worker.fsdp, tmp_path, "fsdp")
    got, want = load_file(str(tmp_path / "fsdp")), worker.reference()
    for k in want:
        assert torch.allclose(got[k], want[k], atol=1e-5), k


def test_pipeline_two_stages_match_one_process(tmp_path) -> None:
    _run(worker.pipeline, tmp_path, "pipe")
    want = worker.reference()
    s0, s1 = load_file(str(tmp_path / "pipe.0")), load_file(str(tmp_path / "pipe.1"))
    assert torch.allclose(s0["0.weight"], want["0.weight"], atol=1e-5)
    assert torch.allclose(s1["0.weight"], want["2.weight"], atol=1e-5)
