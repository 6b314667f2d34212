"""The shared model kernels: BatchNorm folding, hooks that are always removed, the teacher wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimkit.errors import UsageError
from slimkit.kernels.batchnorm import fold_batchnorm, fold_by_run, why_not_foldable
from slimkit.kernels.hooks import Hooks, Recorder, trace_calls
from slimkit.kernels.teacher import TeacherStudent


def _stats(bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so every term of a fold matters."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(bn.num_features, generator=gen) * 2 - 1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(bn.num_features, generator=gen) - 0.5)
    return bn.eval()


def _no_hooks(model: nn.Module) -> bool:
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize(("layer", "bn", "shape"), [
    (nn.Conv2d(2, 4, 3, bias=False), nn.BatchNorm2d(4), (2, 2, 6, 6)),
    (nn.ConvTranspose2d(4, 6, 3, groups=2), nn.BatchNorm2d(6), (2, 4, 5, 5)),
    (nn.Linear(3, 5), nn.BatchNorm1d(5), (4, 3)),
])
def test_a_fold_equals_the_unfolded_output(layer: nn.Module, bn: nn.Module, shape: tuple[int, ...]) -> None:
    _stats(bn)  # type: ignore[arg-type]
    x = torch.randn(shape)
    with torch.no_grad():
        ref = bn(layer(x))
        fold_batchnorm(layer, bn)  # type: ignore[arg-type]
        torch.testing.assert_close(layer(x), ref, rtol=1e-5, atol=1e-5)


def test_fold_by_run_folds_in_place_and_undoes_a_fold_that_would_change_the_output() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), _stats(nn.BatchNorm2d(3)), nn.ReLU())
    x = {"input": torch.randn(2, 1, 6, 6)}
    with torch.no_grad():
        ref = net(**x)
    assert fold_by_run(net, x) == ["1"] and isinstance(net[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(net(**x), ref, rtol=1e-5, atol=1e-5)
    assert _no_hooks(net)

    class Branch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(1, 2, 3, bias=False), _stats(nn.BatchNorm2d(2))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second use

    model = Branch().eval()
    weight = model.conv.weight.detach().clone()
    assert fold_by_run(model, {"x": torch.randn(1, 1, 5, 5)}) == []
    assert isinstance(model.bn, nn.BatchNorm2d) and model.conv.bias is None
    assert torch.equal(model.conv.weight, weight)


def test_why_not_foldable_names_the_reason() -> None:
    assert why_not_foldable(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)) is None
    no_stats = nn.BatchNorm2d(2, track_running_stats=False)
    assert "running statistics" in str(why_not_foldable(nn.Conv2d(1, 2, 3), no_stats))
    assert "features" in str(why_not_foldable(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(3)))


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_hooks_are_removed_even_when_the_forward_raises() -> None:
    net = nn.Sequential(nn.Linear(2, 2), _Boom())
    x = torch.zeros(1, 2)
    with pytest.raises(RuntimeError, match="boom"), Hooks() as hooks:
        hooks.forward(net[0], lambda *_: None)
        hooks.pre(net[1], lambda *_: None)
        net(x)
    assert _no_hooks(net)
    with pytest.raises(RuntimeError, match="boom"), Recorder(net, ["0"]) as rec:
        net(x)
    assert _no_hooks(net) and "0" in rec.outputs  # what ran before the error is kept
    with pytest.raises(RuntimeError, match="boom"), trace_calls(net, lambda _n, m: isinstance(m, nn.Linear)) as calls:
        net(x)
    assert _no_hooks(net) and [c.name for c in calls] == ["0"]


def test_the_recorder_keeps_the_latest_named_outputs() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with Recorder(net, ["0", "2"]) as rec:
        net(torch.zeros(1, 3))
        out = net(torch.ones(5, 3))
    assert sorted(rec.outputs) == ["0", "2"] and rec.outputs["0"].shape == (5, 4)
    assert torch.equal(rec.outputs["2"], out)
    assert _no_hooks(net)
    with pytest.raises(UsageError, match="no layer named nope"):
        Recorder(net, ["0", "nope"])
    assert _no_hooks(net)


def test_trace_calls_counts_every_call_in_order() -> None:
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.Tanh(), shared)
    with trace_calls(net, lambda _n, m: m is shared) as calls:
        net(torch.zeros(3, 2))
    assert [(c.name, c.shape) for c in calls] == [("0", (3, 2)), ("0", (3, 2))]


@pytest.mark.parametrize("copy_teacher", [False, True])
def test_the_teacher_wrapper_never_trains_the_teacher(copy_teacher: bool) -> None:
    torch.manual_seed(0)
    teacher, student = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 2))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    pair = TeacherStudent(student, teacher, copy_teacher=copy_teacher)
    pair.record([("0", "0")])
    assert (pair.teacher is teacher) is not copy_teacher
    assert [n for n, _ in pair.named_parameters()] == ["student.0.weight", "student.0.bias"]
    assert not any(k.startswith("_teacher") for k in pair.state_dict())
    opt = torch.optim.SGD(pair.parameters(), lr=0.1)
    pair.train()
    x = torch.randn(8, 3)
    for _ in range(2):
        t_out = pair.teacher_output({"input": x})
        loss = (pair.student(x) - t_out).pow(2).mean() + pair.student_features()[0].sum() * 0
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert not pair.teacher.training and not t_out.requires_grad
    assert not any(p.requires_grad or p.grad is not None for p in pair.teacher.parameters())
    assert all(torch.equal(v, pair.teacher.state_dict()[k]) for k, v in before.items())
    assert pair.teacher_features()[0].shape == (8, 4)
    pair.remove()
    assert _no_hooks(student) and _no_hooks(pair.teacher)
