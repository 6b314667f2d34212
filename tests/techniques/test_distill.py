"""Distillation on tiny models: each loss, depth pairing, adapters, teacher frozen, caching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.core.data import Batches
from slimkit.errors import UsageError
from slimkit.plugins import config_from_dict
from slimkit.techniques.distill import (
    Adapter,
    DistillConfig,
    Distiller,
    attention_loss,
    auto_pairs,
    distill_model,
    feature_loss,
    kd_loss,
    paired_batches,
)


class Net(nn.Module):
    def __init__(self, width: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def _data(n: int = 24) -> Batches:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, 6, generator=g)
    return Batches({"x": x}, torch.randint(0, 3, (n,), generator=g), batch_size=8, shuffle=True)


def test_kd_loss_temperature_scaling_and_gradient() -> None:
    s = torch.randn(5, 4, requires_grad=True)
    t = torch.randn(5, 4)
    assert float(kd_loss(t, t, 3.0)) < 1e-6
    loss = kd_loss(s, t, 3.0)
    manual = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") * 9
    assert torch.allclose(loss, manual, atol=1e-6)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_feature_loss_through_adapters() -> None:
    spatial = Adapter((2, 4, 3, 3), (2, 8, 6, 6))
    assert spatial(torch.randn(2, 4, 3, 3)).shape == (2, 8, 6, 6)
    flat = Adapter((2, 4, 3, 3), (2, 5))
    assert flat(torch.randn(2, 4, 3, 3)).shape == (2, 5)
    t = torch.randn(2, 8, 6, 6)
    assert float(feature_loss(F.layer_norm(t, t.shape[1:]), t)) < 1e-10


def test_attention_loss_ignores_channels_and_scale() -> None:
    f = torch.randn(2, 4, 6, 6)
    assert float(attention_loss(f, 3 * torch.cat([f, f], 1))) < 1e-6
    assert float(attention_loss(torch.randn(2, 4, 3, 3), f)) > 0  # resized to the teacher's map


def test_auto_pairs_follow_relative_depth() -> None:
    x = {"x": torch.zeros(1, 1, 6, 6)}
    pairs = auto_pairs(Net(8, 6), x, Net(4, 3), x, count=2)
    # Teacher convs features.0..10 and student convs features.0..4 (heads excluded), at depths 1/3 and 2/3.
    assert pairs == [("features.4", "features.2"), ("features.6", "features.2")]


@pytest.mark.parametrize("weights", [dict(), dict(feature_weight=1.0), dict(attention_weight=1.0),
                                     dict(feature_weight=0.5, attention_weight=0.5, pairs=("features.2=features.0",))])
def test_each_loss_trains_the_student_and_leaves_the_teacher(weights: dict) -> None:
    torch.manual_seed(0)
    teacher, student = Net(8, 3), Net(4, 2)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    cfg = DistillConfig(epochs=2, lr=1e-2, auto_pairs=1, **weights)
    s0 = [p.clone() for p in student.parameters()]
    r = distill_model(teacher, student, _data(), cfg, F.cross_entropy)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(s0, student.parameters(), strict=True))
    assert len(r.train.history) == 2 and all(row["loss"] == row["loss"] for row in r.train.history)
    assert bool(r.pairs) == bool(weights)


def test_terms_and_teacher_eval_mode_without_grad() -> None:
    teacher, student = Net(8, 3), Net(4, 2)
    teacher.train()
    cfg = DistillConfig(feature_weight=1.0, attention_weight=1.0, auto_pairs=1)
    d = Distiller(teacher, student, cfg, F.cross_entropy, {"x": torch.zeros(2, 1, 6, 6)})
    d.train()
    out = d(x=torch.randn(4, 1, 6, 6))
    terms = d.terms(out, torch.tensor([0, 1, 2, -100]))
    assert set(terms) == {"kd", "hard", "feature", "attention"}
    assert not d.teacher.training and not any(p.requires_grad for p in d.teacher.parameters())
    assert not any(n.startswith("_teacher") for n in d.state_dict())


def test_cached_teacher_logits_match_live_ones() -> None:
    teacher, student = Net(8, 3), Net(4, 2)
    data = _data()
    paired = paired_batches(data, None, labelled=4)
    assert int((paired.targets == -100).sum()) == data.num_items - 4
    d = Distiller(teacher, student, DistillConfig(), F.cross_entropy, {"x": data.inputs["x"][:2]})
    d.cache_teacher(paired)
    with torch.no_grad():
        assert torch.allclose(d.cache, teacher(data.inputs["x"]), atol=1e-5)


def test_config_round_trip_and_validation() -> None:
    cfg = DistillConfig(temperature=2.0, feature_weight=1.0, pairs=("a=b",))
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UsageError):
        DistillConfig(feature_weight=1.0, pairs=("a-b",))
    with pytest.raises(UsageError, match="both weights are 0"):  # pairs alone changed nothing
        DistillConfig(pairs=("a=b",))
    with pytest.raises(UsageError):
        DistillConfig(alpha=1.5)
