"""NaN or infinite metrics fail the run or the trial with the reason; the report is still written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import slimkit
from slimkit.errors import NonFiniteError
from slimkit.search import SearchSpace


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()


X, Y = torch.randn(64, 6), torch.randint(0, 3, (64,))
DATA = [(X[i:i + 16], Y[i:i + 16]) for i in range(0, 64, 16)]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_baseline_metric_is_a_clear_failure_and_leaves_no_folder(tmp_path: Path, value: float) -> None:
    out = tmp_path / "new" / "b"
    with pytest.raises(NonFiniteError, match="is (nan|inf|-inf) on torch") as err:
        slimkit.benchmark(_model(), DATA, metric=lambda o, t: value, targets=["torch"], out=out, quick=True, threads=1)
    assert "metric function" in err.value.hint
    assert not (tmp_path / "new").exists()  # nothing finished: nothing half-written left


def test_nan_outputs_are_named_as_the_cause() -> None:
    from slimkit.measure.measure import output_warning

    assert "NaN" in str(output_warning(torch.full((3, 2), float("nan"))))


def test_a_trial_whose_metric_is_nan_fails_with_the_reason_and_the_report_is_written(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(outputs: torch.Tensor, targets: torch.Tensor) -> float:
        calls["n"] += 1  # the baseline's evaluation first, then every candidate's is NaN
        return float((outputs.argmax(1) == targets).float().mean()) if calls["n"] == 1 else float("nan")

    space = SearchSpace(targets=("onnxruntime",), fuse=(False,), prune_ratio=(0.0, 0.3), recover_epochs=0,
                        quant_scheme=("none",))
    result = slimkit.optimize(_model(), DATA, metric=flaky, space=space, trials=2, sampler="grid",
                              out=tmp_path / "o", quick=True, threads=1)
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["baseline"]["metric"]["value"] is not None
    failed = report["search"]["failed"] if "failed" in report.get("search", {}) else None
    text = (tmp_path / "o" / "report.md").read_text()
    assert "is nan" in text, (failed, text[-1500:])
    assert result.best is None or result.best_entry is not None
