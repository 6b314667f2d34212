"""The loop's contracts: accumulation, resume equivalence, batch-size modes, regularization."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Batches
from slimkit.core.task import Metric, accuracy
from slimkit.errors import UsageError
from slimkit.train import FULL_BATCH, TrainConfig, fit
from slimkit.train.regularize import vision_augment


def _data(n: int = 32, batch: int = 8, shuffle: bool = False) -> Batches:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Batches({"features": x}, y, batch_size=batch, shuffle=shuffle, seed=3)


class MLP(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def _params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_accumulating_two_half_batches_equals_one_full_batch(optimizer: str) -> None:
    a, b = MLP(), MLP()
    cfg = TrainConfig(epochs=2, lr=0.05, optimizer=optimizer, schedule="constant", weight_decay=0.0)
    fit(a, _data(batch=16), F.cross_entropy, cfg)
    fit(b, _data(batch=8), F.cross_entropy, TrainConfig(**{**cfg.to_dict(), "accumulate": 2}))
    assert torch.allclose(_params(a), _params(b), atol=1e-6)


def test_resume_continues_the_same_loss_curve(tmp_path) -> None:
    cfg = TrainConfig(epochs=5, lr=0.05, warmup_epochs=1, checkpoint_dir=str(tmp_path / "a"))
    aug = vision_augment(lambda t: t + 0.1 * torch.randn_like(t), key="features")
    whole = fit(MLP(dropout=0.3), _data(shuffle=True), F.cross_entropy, cfg, augment=aug)

    class Crash(Exception):
        pass

    def crash(epoch: int, row: dict) -> None:
        if epoch == 2:
            raise Crash

    cfg_b = TrainConfig(**{**cfg.to_dict(), "checkpoint_dir": str(tmp_path / "b")})
    with pytest.raises(Crash):
        fit(MLP(dropout=0.3), _data(shuffle=True), F.cross_entropy, cfg_b, augment=aug, on_epoch=crash)
    resumed_model = MLP(dropout=0.3)
    resumed = fit(resumed_model, _data(shuffle=True), F.cross_entropy,
                  TrainConfig(**{**cfg_b.to_dict(), "resume": True}), augment=aug)
    assert resumed.resumed_from == 2
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in whole.history]


def test_resume_with_more_epochs_follows_the_longer_schedule_and_says_so(tmp_path) -> None:
    """More epochs on resume stretched the cosine without a word; the lr now follows the new plan
    from the resumed step on, and a note says how far it moved."""
    planned = fit(MLP(), _data(), F.cross_entropy, TrainConfig(epochs=4, lr=0.05))
    cfg = TrainConfig(epochs=2, lr=0.05, checkpoint_dir=str(tmp_path))
    short = fit(MLP(), _data(), F.cross_entropy, cfg)
    assert not short.notes
    longer = fit(MLP(), _data(), F.cross_entropy, TrainConfig(**{**cfg.to_dict(), "epochs": 4, "resume": True}))
    assert [r["lr"] for r in longer.history[2:]] == pytest.approx([r["lr"] for r in planned.history[2:]])
    assert len(longer.notes) == 1 and "now spans" in longer.notes[0]


def test_seeded_runs_are_identical() -> None:
    cfg = TrainConfig(epochs=2, lr=0.05, dropout=0.2)
    a, b = MLP(), MLP()
    ra = fit(a, _data(shuffle=True), F.cross_entropy, cfg)
    rb = fit(b, _data(shuffle=True), F.cross_entropy, cfg)
    assert ra.history == rb.history and torch.equal(_params(a), _params(b))


def test_full_batch_and_per_sample_step_counts() -> None:
    steps = []
    for bs in (FULL_BATCH, 1):
        cfg = TrainConfig(epochs=1, lr=0.01, batch_size=bs, schedule="step", gamma=0.5)
        model = MLP()
        opt_steps = []
        orig = torch.optim.AdamW.step

        def counting(self, *a, _orig=orig, _seen=opt_steps, **k):  # noqa: ANN001
            _seen.append(1)
            return _orig(self, *a, **k)

        torch.optim.AdamW.step = counting  # type: ignore[method-assign]
        try:
            fit(model, _data(n=12, batch=4), F.cross_entropy, cfg)
        finally:
            torch.optim.AdamW.step = orig  # type: ignore[method-assign]
        steps.append(len(opt_steps))
    assert steps == [1, 12]


def test_early_stopping_restores_the_best_weights() -> None:
    data = _data()
    metric = Metric("accuracy", accuracy)
    seen = []
    r = fit(MLP(), data, F.cross_entropy, TrainConfig(epochs=50, lr=1e-4, patience=2, min_delta=50.0),
            eval_data=data, metric=metric, on_epoch=lambda e, row: seen.append(e))
    assert r.stopped_early and len(seen) == 3


def test_penalties_label_smoothing_and_validation() -> None:
    base = fit(MLP(), _data(), F.cross_entropy, TrainConfig(epochs=1, lr=0.05))
    l1 = fit(MLP(), _data(), F.cross_entropy, TrainConfig(epochs=1, lr=0.05, l1=1e-2, label_smoothing=0.1))
    assert l1.history[0]["loss"] != base.history[0]["loss"]
    with pytest.raises(UsageError):
        TrainConfig(precision="fp8")
    with pytest.raises(UsageError):
        TrainConfig(resume=True)
