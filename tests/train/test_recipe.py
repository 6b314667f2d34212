"""The efficient recipe: each choice taken only when measured faster, every path forced on any host."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Batches
from slimkit.core.task import Metric, accuracy
from slimkit.errors import UsageError
from slimkit.train import TrainConfig, fit
from slimkit.train import precision as P
from slimkit.train import recipe as R

CPU = torch.device("cpu")


class TinyConv(nn.Module):
    """Any image side goes in (adaptive pooling), ten classes come out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class FixedSize(TinyConv):
    """Flattens the feature map into a Linear: only its training side fits."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(8 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(torch.relu(self.conv(x)), 1))


def _images(n: int = 256, side: int = 32, batch: int = 8) -> Batches:
    g = torch.Generator().manual_seed(0)
    return Batches({"x": torch.rand(n, 3, side, side, generator=g)}, torch.randint(0, 10, (n,), generator=g),
                   batch_size=batch, shuffle=True, seed=0)


def _fake_timings(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float]) -> None:
    """Replace the clock: each probed variant 'takes' the seconds given for its name (1.0 otherwise)."""

    def fake(steps: dict, rounds: int) -> dict[str, float]:
        for step in steps.values():
            step()  # the steps still run: they must work
        return {k: seconds.get(k, 1.0) for k in steps}

    monkeypatch.setattr(R, "_interleaved", fake)


def _plan(model: nn.Module, data: Batches, **cfg: object) -> tuple[TrainConfig, dict]:
    return R.plan(model, data, F.cross_entropy, TrainConfig(recipe="efficient", **cfg),  # type: ignore[arg-type]
                  CPU, P.requested("fp32", CPU))


def test_nothing_measured_faster_leaves_the_plain_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"double": 2.0})  # every variant as fast (per item) as the plain one
    cfg, report = _plan(TinyConv(), _images(), epochs=4, lr=1e-3)
    assert (cfg.memory_format, cfg.optimizer_impl, cfg.batch_size, cfg.lr, cfg.compile, cfg.low_res_epochs) == (
        "contiguous", "foreach", None, 1e-3, False, 0)
    assert cfg.warmup_epochs == pytest.approx(0.4)  # the one-cycle shape: 10% warm-up, then cosine
    assert set(report["choices"]) >= {"precision", "memory_format", "optimizer_impl", "batch_size", "compile",
                                      "progressive_resizing", "schedule", "threads"}
    assert report["probe_seconds"] >= 0


def test_each_choice_is_taken_when_measured_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    # per step: channels_last 2x, fused 2x; batch 16 takes 1.2x the time of batch 8 (1.67x per item);
    # half resolution 3x faster
    _fake_timings(monkeypatch, {"channels_last": 0.5, "fused": 0.5, "single": 1.0, "double": 1.2,
                                "half": 1 / 3})
    cfg, report = _plan(TinyConv(), _images(), epochs=8, lr=1e-3, progressive_resizing=True)
    assert cfg.memory_format == "channels_last" and cfg.optimizer_impl == "fused"
    assert cfg.batch_size == 16 and cfg.lr == pytest.approx(1e-3 * math.sqrt(2))
    assert (cfg.low_res_epochs, cfg.low_res_side) == (2, 16)
    assert report["choices"]["batch_size"]["gain"] == pytest.approx(1 / 0.6, rel=1e-3)
    assert "2.00x" in report["choices"]["memory_format"]["reason"]


def test_a_small_gain_is_not_enough_for_a_bigger_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"single": 1.0, "double": 1.8})  # 1.11x per item: fewer steps cost more
    cfg, report = _plan(TinyConv(), _images(), epochs=4)
    assert cfg.batch_size is None and "needs 1.3x" in report["choices"]["batch_size"]["reason"]


def test_a_batch_size_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"single": 1.0, "double": 1.0})
    cfg, report = _plan(TinyConv(), _images(), epochs=4, batch_size=8)
    assert cfg.batch_size == 8 and report["choices"]["batch_size"]["reason"] == "set by the user"


def test_resizing_is_off_unless_asked_and_skipped_where_the_model_cannot_take_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"half": 0.1})
    cfg, report = _plan(TinyConv(), _images(), epochs=8)
    assert cfg.low_res_epochs == 0 and "off" in report["choices"]["progressive_resizing"]["reason"]
    cfg, report = _plan(FixedSize(), _images(), epochs=8, progressive_resizing=True)
    assert cfg.low_res_epochs == 0 and "rejects side 16" in report["choices"]["progressive_resizing"]["reason"]


def test_compile_is_tried_only_for_runs_long_enough_to_repay_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"eager": 1.0, "compiled": 0.5})
    _, report = _plan(TinyConv(), _images(), epochs=2)
    assert report["choices"]["compile"]["value"] is False and "not tried" in report["choices"]["compile"]["reason"]
    monkeypatch.setattr(R, "COMPILE_MIN_RUN_S", 0.0)
    monkeypatch.setattr(torch, "compile", lambda m: m)  # the path, without minutes of compilation
    _, report = _plan(TinyConv(), _images(), epochs=2)
    assert "compiling took" in report["choices"]["compile"]["reason"]


def test_prepare_inputs_resizes_only_the_low_resolution_epochs() -> None:
    cfg = TrainConfig(memory_format="channels_last", low_res_epochs=2, low_res_side=16)
    x = {"x": torch.rand(2, 3, 32, 32), "ids": torch.zeros(2, 4, dtype=torch.long)}
    early, late = R.prepare_inputs(x, cfg, 1), R.prepare_inputs(x, cfg, 2)
    assert early["x"].shape[-1] == 16 and late["x"].shape[-1] == 32
    assert late["x"].is_contiguous(memory_format=torch.channels_last)
    assert early["ids"] is x["ids"]


def test_fit_trains_with_the_recipe_and_hands_the_model_back_contiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, {"channels_last": 0.5, "half": 0.1})
    model, data = TinyConv(), _images(side=32)
    cfg = TrainConfig(epochs=4, lr=1e-2, recipe="efficient", precision="fp32", progressive_resizing=True)
    result = fit(model, data, F.cross_entropy, cfg, eval_data=_images(64), metric=Metric("accuracy", accuracy))
    assert result.recipe is not None and result.recipe["choices"]["memory_format"]["value"] == "channels_last"
    assert result.recipe["choices"]["progressive_resizing"]["value"] == {"epochs": 1, "side": 16}
    assert len(result.history) == 4 and all(math.isfinite(r["loss"]) for r in result.history)
    assert model.conv.weight.is_contiguous()


def test_a_resumed_run_trains_with_the_recipe_it_was_planned_with(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    _fake_timings(monkeypatch, {"channels_last": 0.5})
    base = TrainConfig(epochs=2, recipe="efficient", precision="fp32", checkpoint_dir=str(tmp_path))
    fit(TinyConv(), _images(), F.cross_entropy, base)
    stored = json.loads((tmp_path / R.RECIPE_FILE).read_text())
    assert stored["config"]["memory_format"] == "channels_last"
    _fake_timings(monkeypatch, {"contiguous": 0.1})  # the host now says otherwise: the run keeps its plan
    resumed = fit(TinyConv(), _images(), F.cross_entropy, TrainConfig(**{**base.to_dict(), "epochs": 3,
                                                                           "resume": True}))
    assert resumed.recipe is not None and resumed.recipe["choices"]["memory_format"]["value"] == "channels_last"
    assert resumed.resumed_from == 2 and len(resumed.history) == 3


def test_unknown_recipe_settings_are_usage_errors() -> None:
    for bad in ({"recipe": "fast"}, {"memory_format": "nhwc"}, {"optimizer_impl": "apex"}, {"low_res_side": -1}):
        with pytest.raises(UsageError):
            TrainConfig(**bad)  # type: ignore[arg-type]
