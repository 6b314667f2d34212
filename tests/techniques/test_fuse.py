"""Tests for the fuse step: BatchNorm folding in torch and ONNX Runtime graph optimization."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from slimkit.errors import ParityError, UsageError
from slimkit.tasks.digits import DigitsCNN
from slimkit.techniques.fuse import FuseConfig, OnnxOptResult, fuse_torch, optimize_onnx


def _batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, _BatchNorm) for m in model.modules())


def _warm(model: nn.Module, x: torch.Tensor, steps: int = 3) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine parameters, then eval mode.

    With fresh stats (mean 0, var 1, gamma 1, beta 0) BatchNorm is nearly the identity and a
    wrong fold could still pass; shifted, scaled stats make every term of the fold matter.
    """
    gen = torch.Generator().manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x * 2.0 + 0.5 + torch.randn(x.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, _BatchNorm) and m.affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
    return model.eval()


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor], training: bool) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert model.training is training


def _outputs_match(original: nn.Module, fused: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        torch.testing.assert_close(fused(**inputs), original.eval()(**inputs), rtol=1e-5, atol=1e-5)


def test_digits_cnn_folds_every_batchnorm() -> None:
    torch.manual_seed(0)
    model = _warm(DigitsCNN(), torch.randn(16, 1, 8, 8))
    before = _snapshot(model)
    inputs = {"x": torch.randn(4, 1, 8, 8)}

    fused, result = fuse_torch(model, inputs)

    assert isinstance(fused, DigitsCNN) and fused is not model
    assert (result.batchnorms_before, result.batchnorms_after, _batchnorms(fused)) == (3, 0, 0)
    assert [(p.layer, p.bn, p.kind, p.found_by) for p in result.fused] == [
        ("features.0", "features.1", "conv_bn", "fx"),
        ("features.3", "features.4", "conv_bn", "fx"),
        ("features.7", "features.8", "conv_bn", "fx"),
    ]
    assert fused.features[0].bias is not None  # a bias-free conv gained the folded bias
    assert not fused.training
    assert result.parity.cosine > 0.99999
    _outputs_match(model, fused, inputs)
    _assert_unchanged(model, before, training=False)
    assert _batchnorms(model) == 3
    json.dumps(result.to_dict())  # the result is reportable as-is


def test_resnet18_keeps_its_class_and_attribute_names() -> None:
    models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = _warm(models.resnet18(num_classes=10), torch.randn(4, 3, 32, 32), steps=2)
    model.train()  # the caller's mode must survive too
    before = _snapshot(model)
    inputs = {"x": torch.randn(1, 3, 32, 32)}

    fused, result = fuse_torch(model, inputs)

    assert type(fused) is type(model)
    assert (result.batchnorms_before, result.batchnorms_after, len(result.fused)) == (20, 0, 20)
    assert isinstance(fused.bn1, nn.Identity) and isinstance(fused.layer2[0].downsample[1], nn.Identity)
    assert not result.skipped and not result.untraced
    # State-dict keys: the original's, less the BatchNorm entries, plus one bias per folded conv.
    bn_keys = {k for k in before if any(k.startswith(p.bn + ".") for p in result.fused)}
    assert set(fused.state_dict()) == (set(before) - bn_keys) | {f"{p.layer}.bias" for p in result.fused}
    _assert_unchanged(model, before, training=True)
    _outputs_match(model, fused, inputs)


class _Block(nn.Module):
    def __init__(self, layer: nn.Module, bn: nn.Module) -> None:
        super().__init__()
        self.layer, self.bn = layer, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.layer(x)))


@pytest.mark.parametrize(
    ("layer", "bn", "shape"),
    [
        (nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), (2, 8, 6, 6)),  # depthwise
        (nn.Conv2d(4, 6, 3, groups=2), nn.BatchNorm2d(6), (2, 4, 6, 6)),  # grouped, with bias
        (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(4), (2, 3, 6, 6)),
        (nn.Conv1d(3, 5, 3, stride=2), nn.BatchNorm1d(5), (2, 3, 11)),
        (nn.Conv3d(2, 4, 2, bias=False), nn.BatchNorm3d(4, affine=False), (2, 2, 4, 4, 4)),
        (nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2), nn.BatchNorm2d(6), (2, 4, 5, 5)),
        (nn.ConvTranspose1d(3, 4, 3, bias=False), nn.BatchNorm1d(4), (2, 3, 7)),
    ],
    ids=["depthwise", "grouped", "reflect-pad", "conv1d", "conv3d-no-affine", "convT2d-grouped", "convT1d"],
)
def test_conv_variants_fold_exactly(layer: nn.Module, bn: nn.Module, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = _warm(_Block(layer, bn), torch.randn(shape))
    inputs = {"x": torch.randn(shape)}

    fused, result = fuse_torch(model, inputs)

    assert [(p.layer, p.bn) for p in result.fused] == [("layer", "bn")]
    assert isinstance(fused.bn, nn.Identity) and isinstance(model.bn, _BatchNorm)
    _outputs_match(model, fused, inputs)


def test_linear_batchnorm_mlp() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 3),
    )
    _warm(model, torch.randn(32, 6))
    before = _snapshot(model)
    inputs = {"input": torch.randn(5, 6)}

    fused, result = fuse_torch(model, inputs)

    assert {p.kind for p in result.fused} == {"linear_bn"} and len(result.fused) == 2
    assert _batchnorms(fused) == 0
    _outputs_match(model, fused, inputs)
    _assert_unchanged(model, before, training=False)

    kept, only_conv = fuse_torch(model, inputs, FuseConfig(linear_bn=False))
    assert not only_conv.fused and _batchnorms(kept) == 2
    assert {r.reason for r in only_conv.skipped} == {"linear_bn is disabled in the config"}


class _Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace this."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.mean() > 0 else -x


class _Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), _Gate(), nn.Conv2d(8, 4, 1),
                                  nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))  # traceable on its own

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        # Always true for real inputs, but fx cannot know that without data.
        return self.head(y) if x.abs().sum() > 0 else y


def test_untraceable_model_falls_back_to_sequential_pairs() -> None:
    torch.manual_seed(0)
    model = _warm(_Untraceable(), torch.randn(8, 3, 6, 6))
    inputs = {"x": torch.randn(2, 3, 6, 6)}

    fused, result = fuse_torch(model, inputs)

    assert set(result.untraced) == {"", "body", "body.2"}  # root, body, _Gate
    found = {(p.layer, p.bn, p.found_by) for p in result.fused}
    assert found == {("body.0", "body.1", "sequential"), ("body.3", "body.4", "sequential"),
                     ("head.0", "head.1", "fx")}
    assert isinstance(fused, _Untraceable) and _batchnorms(fused) == 0
    _outputs_match(model, fused, inputs)
    negated = {"x": -inputs["x"]}  # other branches of both gates still agree
    _outputs_match(model, fused, negated)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.shared = nn.BatchNorm2d(4)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.stateless = nn.BatchNorm2d(4, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        y = self.bn(y) + y  # the conv output is used beside the BatchNorm
        y = self.shared(self.conv2(y))
        y = self.shared(y)  # one BatchNorm module called twice
        return self.stateless(self.conv3(y))


def test_unsafe_patterns_are_skipped_with_reasons() -> None:
    torch.manual_seed(0)
    model = _warm(_Residual(), torch.randn(8, 4, 5, 5))
    inputs = {"x": torch.randn(2, 4, 5, 5)}

    fused, result = fuse_torch(model, inputs)

    assert not result.fused and _batchnorms(fused) == 3
    reasons = {r.layer: r.reason for r in result.skipped}
    assert "also used" in reasons["conv"]
    assert "more than once" in reasons["conv2"]
    assert "running statistics" in reasons["conv3"]
    _outputs_match(model, fused, inputs)


def test_wrong_fold_raises_parity_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from slimkit.techniques.fuse import _torch

    real = _torch.fold_batchnorm

    def off_by_a_bit(layer: nn.Module, bn: nn.Module) -> None:
        real(layer, bn)
        with torch.no_grad():
            layer.weight.mul_(1.01)

    monkeypatch.setattr(_torch, "fold_batchnorm", off_by_a_bit)
    model = _warm(DigitsCNN(width=8), torch.randn(8, 1, 8, 8))
    with pytest.raises(ParityError, match="BatchNorm-fused model"):
        fuse_torch(model, {"x": torch.randn(2, 1, 8, 8)})


def test_config_round_trips_through_json() -> None:
    for cfg in (FuseConfig(), FuseConfig(conv_bn=False), FuseConfig(conv_bn=False, linear_bn=False)):
        raw = json.loads(json.dumps(cfg.to_dict()))
        assert raw == {"type": "fuse", "version": 1,
                       "data": {"conv_bn": cfg.conv_bn, "linear_bn": cfg.linear_bn}}
        assert FuseConfig.from_dict(raw) == cfg
    with pytest.raises(UsageError, match="not a fuse config"):
        FuseConfig.from_dict({"type": "prune", "version": 1, "data": {}})
    with pytest.raises(UsageError, match="unknown field"):
        FuseConfig.from_dict({"type": "fuse", "version": 1, "data": {"conv_relu": True}})
    with pytest.raises(UsageError, match="version 2"):
        FuseConfig.from_dict({"type": "fuse", "version": 2, "data": {}})
    with pytest.raises(UsageError, match="true or false"):
        FuseConfig(conv_bn="yes")  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        FuseConfig().conv_bn = False  # type: ignore[misc]


# --- ONNX Runtime graph optimization ---------------------------------------------------------


def _tiny_onnx(path: Path) -> None:
    """Conv-BN-ReLU-Conv-ReLU-pool-Gemm built by hand: an exporter would already fold the BN."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, *shape: int, low: float = -1.0, high: float = 1.0) -> object:
        return numpy_helper.from_array(rng.uniform(low, high, shape).astype(np.float32), name)

    inits = [init("w1", 8, 3, 3, 3), init("b1", 8), init("gamma", 8, low=0.5, high=1.5), init("beta", 8),
             init("mean", 8), init("var", 8, low=0.5, high=2.0), init("w2", 8, 8, 3, 3), init("wf", 4, 8),
             init("bf", 4)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 4])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every supported ONNX Runtime reads
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.onnx
@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_optimize_onnx_levels(tmp_path: Path, level: str) -> None:
    pytest.importorskip("onnxruntime")
    src, out = tmp_path / "tiny.onnx", tmp_path / f"tiny.{level}.onnx"
    _tiny_onnx(src)
    x = torch.randn(2, 3, 8, 8)

    result = optimize_onnx(src, out, level=level, check_inputs={"x": x})

    assert isinstance(result, OnnxOptResult) and result.path == out and out.is_file()
    assert result.nodes_before == 8 and result.nodes_after <= result.nodes_before
    assert "BatchNormalization" in result.ops_before and "BatchNormalization" not in result.ops_after
    assert result.parity is not None and result.parity.cosine > 0.99999
    np.testing.assert_allclose(_ort_run(out, x.numpy()), _ort_run(src, x.numpy()), rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, out.name])  # no temp left
    json.dumps(result.to_dict())


@pytest.mark.onnx
def test_optimize_onnx_in_place_and_bad_arguments(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    src = tmp_path / "tiny.onnx"
    _tiny_onnx(src)
    x = {"x": torch.randn(1, 3, 8, 8)}
    reference = _ort_run(src, x["x"].numpy())

    result = optimize_onnx(src, src, level="basic", check_inputs=x)  # overwrite the input itself

    assert result.nodes_after < result.nodes_before  # Conv+BatchNormalization folded
    np.testing.assert_allclose(_ort_run(src, x["x"].numpy()), reference, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError, match="unknown ONNX Runtime optimization level"):
        optimize_onnx(src, tmp_path / "o.onnx", level="max")
    with pytest.raises(UsageError, match="lacks the ONNX model's input"):
        optimize_onnx(src, tmp_path / "o.onnx", check_inputs={"input": x["x"]})
    with pytest.raises(UsageError, match="no ONNX file"):
        optimize_onnx(tmp_path / "missing.onnx", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


@pytest.mark.onnx
def test_optimize_onnx_mismatch_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from slimkit.techniques.fuse import _onnx

    src, out = tmp_path / "tiny.onnx", tmp_path / "tiny.opt.onnx"
    _tiny_onnx(src)
    real = _onnx._run

    def drifting(ort: object, path: Path, inputs: dict[str, torch.Tensor], threads: int) -> dict:
        outputs = real(ort, path, inputs, threads)
        return outputs if Path(path) == src else {k: v + 0.1 for k, v in outputs.items()}

    monkeypatch.setattr(_onnx, "_run", drifting)
    with pytest.raises(ParityError, match="does not match the original ONNX"):
        optimize_onnx(src, out, check_inputs={"x": torch.randn(1, 3, 8, 8)})
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_fuse_does_not_touch_a_deep_copy_shared_model() -> None:
    """Folding happens on a copy even when the caller keeps using the original afterwards."""
    model = _warm(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), torch.randn(4, 1, 5, 5))
    reference = copy.deepcopy(model)
    fused, _ = fuse_torch(model, {"input": torch.randn(1, 1, 5, 5)})
    fused[0].weight.data.zero_()  # the fused copy shares no storage with the original
    _outputs_match(reference, model, {"input": torch.randn(1, 1, 5, 5)})
