"""The hostile-input suite through the Python API: each a SlimkitError, no folder left behind."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import slimkit
from slimkit.errors import ResourceError, SlimkitError


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4)).eval()


DATA = [torch.randn(8, 6) for _ in range(3)]


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("my forward is broken")


CASES: list[tuple[str, Any, str]] = [
    ("a model that is not a module", lambda out: slimkit.quantize(42, DATA, target="onnxruntime", out=out),
     "nn.Module"),
    ("no data for quantization", lambda out: slimkit.quantize(_model(), None, target="onnxruntime", out=out),
     "data"),
    ("data of strings", lambda out: slimkit.quantize(_model(), [("a", "b")], target="onnxruntime", out=out),
     "not a tensor"),
    ("an empty data set", lambda out: slimkit.benchmark(_model(), [], out=out), "no items"),
    ("data of the wrong width", lambda out: slimkit.benchmark(_model(), [torch.randn(4, 9)], targets=["torch"],
                                                              out=out), "shape"),
    ("a forward that raises", lambda out: slimkit.benchmark(Raises(), DATA, targets=["torch"], out=out),
     "my forward is broken"),
    ("targets of the wrong type", lambda out: slimkit.benchmark(_model(), DATA, targets=3, out=out), "targets"),
    ("an unknown scheme", lambda out: slimkit.quantize(_model(), DATA, scheme="int9", target="onnxruntime",
                                                       out=out), "int9"),
    ("a NaN budget", lambda out: slimkit.prune(_model(), DATA, ratio=0.3, max_drop=float("nan"), out=out),
     "max-drop"),
    ("threads of a string", lambda out: slimkit.benchmark(_model(), DATA, threads="2", out=out), "threads"),
    ("a metric that raises", lambda out: slimkit.benchmark(_model(), [(x, torch.zeros(8, dtype=torch.long))
                                                                      for x in DATA],
                                                           metric=lambda o, t: 1 / 0, targets=["torch"], out=out),
     "ZeroDivisionError"),
    ("out of a wrong type", lambda out: slimkit.benchmark(_model(), DATA, out=42), "folder path"),
    ("a huge seed", lambda out: slimkit.optimize(_model(), DATA, seed=2**70, out=out), "seed"),
    ("a search space of a wrong type", lambda out: slimkit.optimize(_model(), DATA, space=[1, 2], out=out),
     "mapping"),
    ("load of a folder that is not there", lambda out: slimkit.load(out / "nosuch"), "nosuch"),
]


@pytest.mark.parametrize(("what", "call", "says"), CASES, ids=[c[0] for c in CASES])
def test_hostile_api_input_is_a_slimkit_error_and_leaves_nothing(tmp_path: Path, what: str, call: Any,
                                                                 says: str) -> None:
    out = tmp_path / "new" / "run"
    with pytest.raises(SlimkitError) as err:
        call(out)
    assert says.lower() in str(err.value).lower(), f"{what}: {err.value}"
    assert not (tmp_path / "new").exists(), what


def test_a_full_disk_is_said_as_such_not_blamed_on_an_operator(tmp_path: Path, monkeypatch) -> None:
    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    with pytest.raises(ResourceError, match="no space left on the disk") as err:
        slimkit.benchmark(_model(), DATA, targets=["onnxruntime"], out=tmp_path / "b", quick=True, threads=1)
    assert "free some disk space" in err.value.hint
    assert not (tmp_path / "b").exists()  # nothing finished: nothing left
