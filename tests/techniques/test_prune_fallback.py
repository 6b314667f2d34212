"""The block-internal pruner: the fallback for models Torch-Pruning cannot handle (channel shuffle,
window attention). Tiny models, CPU, a second or less each."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from slimkit.core.task import run_model
from slimkit.measure.flops import count_params
from slimkit.techniques.prune import PruneConfig, PruneError, _structured, load_pruned, prune_structured, save_pruned
from slimkit.techniques.prune._blocks import find_chains, prune_blocks
from slimkit.techniques.prune._errors import TraceError
from slimkit.techniques.prune._graph import graph_blocker


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2-style: half the channels pass, half go through a branch; concat; channel shuffle."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                                    nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                    nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return _shuffle(torch.cat([a, self.branch(b)], dim=1))


class ShuffleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(ShuffleBlock(), ShuffleBlock())
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


class SwinLike(nn.Module):
    """Channel-last tokens, LayerNorm, residual MLP (torchvision's MLP layout) and a head."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.embed = nn.Linear(3, dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(4 * dim, dim),
                                 nn.Dropout(0.0))
        self.head = nn.Linear(dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.embed(x.flatten(2).transpose(1, 2))  # (B, HW, C)
        t = t + self.mlp(self.norm(t))
        return self.head(t.mean(1))


def _inputs() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"x": torch.randn(2, 3, 8, 8)}


def _trace_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Torch-Pruning's tracing fail the way it does on real models (e.g. ShuffleNetV2)."""
    def broken(*_a: object, **_k: object) -> None:
        raise TraceError("could not trace the model's channel dependencies: integer division or modulo by zero")
    monkeypatch.setattr(_structured, "build_pruner", broken)


def _masked(model: nn.Module, inputs: dict[str, torch.Tensor], layer: str, removed: list[int],
            axis: int) -> torch.Tensor:
    """``model``'s output with channels ``removed`` zeroed at the input of ``layer``."""
    def hook(_m: nn.Module, args: tuple) -> tuple:
        x = args[0].clone()
        x.index_fill_(axis % x.dim(), torch.tensor(removed), 0.0)
        return (x,)
    handle = dict(model.named_modules())[layer].register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            return run_model(model.eval(), inputs)
    finally:
        handle.remove()


def test_chains_are_block_internal_only():
    chains = {(c.producer, c.consumer) for c in find_chains(ShuffleNet())}
    # the branch's inner channels; not the stem (its output leaves the Sequential) nor the branch output
    assert chains == {("blocks.0.branch.0", "blocks.0.branch.5"), ("blocks.1.branch.0", "blocks.1.branch.5")}
    assert {(c.producer, c.consumer) for c in find_chains(SwinLike())} == {("mlp.0", "mlp.3")}


def test_trace_failure_falls_back_to_block_pruning(monkeypatch):
    _trace_fails(monkeypatch)
    model, inputs = ShuffleNet().eval(), _inputs()
    original = copy.deepcopy(model)
    result = prune_structured(model, inputs, PruneConfig(ratio=0.5))
    assert result.method == "blocks" and "could not trace" in result.note
    branch = model.blocks[0].branch
    assert (branch[0].out_channels, branch[1].num_features, branch[3].groups, branch[5].in_channels) == (4, 4, 4, 4)
    assert model.stem[0].out_channels == 16 and branch[5].out_channels == 8  # widths leaving blocks: whole
    assert result.layers["blocks.0.branch.0"] == [8, 4]
    assert count_params(model) < count_params(original)
    with torch.no_grad():
        out = run_model(model, inputs)
    assert out.shape == run_model(original, inputs).shape and torch.isfinite(out).all()


def test_swin_like_mlp_hidden_neurons_match_zeroed_reference(monkeypatch):
    _trace_fails(monkeypatch)
    model, inputs = SwinLike().eval(), _inputs()
    original = copy.deepcopy(model)
    prune_structured(model, inputs, PruneConfig(ratio=0.25))
    assert model.mlp[0].out_features == 24 and model.mlp[3].in_features == 24
    assert model.embed.out_features == 8 and model.norm.normalized_shape == (8,)  # the residual width stays
    # the kept neurons are the original rows: pruned == original with the others zeroed
    kept = [i for i in range(32) if any(torch.equal(model.mlp[0].weight[j], original.mlp[0].weight[i])
                                        for j in range(24))]
    removed = sorted(set(range(32)) - set(kept))
    reference = _masked(original, inputs, "mlp.3", removed, -1)
    with torch.no_grad():
        torch.testing.assert_close(run_model(model, inputs), reference, rtol=1e-5, atol=1e-6)


def test_a_channel_read_outside_the_block_is_an_error_naming_the_layer():
    class Tapped(nn.Module):
        """Runs its Sequential by hand and also reads the hidden activations: pruning them would
        keep the shape but silently change the output."""

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.body[1](self.body[0](x))
            return self.body[2](h) + h.sum(-1, keepdim=True)

    model = Tapped().eval()
    inputs = {"x": torch.randn(2, 4)}
    with pytest.raises(PruneError, match="body.0") as err:
        prune_blocks(model, inputs, PruneConfig(ratio=0.5), pristine=copy.deepcopy(model))
    assert err.value.layer == "body.0" and "ignore" in err.value.hint


def test_shared_ignored_and_unexecuted_chains_are_left_whole():
    shared = nn.Linear(4, 16)

    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Sequential(shared, nn.ReLU(), nn.Linear(16, 4))
            self.b = nn.Sequential(shared, nn.Tanh(), nn.Linear(16, 4))  # the same producer twice
            self.c = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
            self.unused = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x) + self.c(x)

    inputs = {"x": torch.randn(2, 4)}
    model = Odd().eval()
    chains = prune_blocks(model, inputs, PruneConfig(ratio=0.5), pristine=copy.deepcopy(model))
    assert [c.producer for c in chains] == ["c.0"]
    assert shared.out_features == 16 and model.unused[0].out_features == 16 and model.c[0].out_features == 8
    model = Odd().eval()
    assert prune_blocks(model, inputs, PruneConfig(ratio=0.5, ignore=("c",)), pristine=copy.deepcopy(model)) == []


def test_layer_ratios_round_to_and_global():
    inputs = _inputs()
    model = ShuffleNet().eval()
    prune_blocks(model, inputs, PruneConfig(ratio=0.0, layer_ratios=("blocks.1.branch.0=0.5",)),
                 pristine=copy.deepcopy(model))
    assert model.blocks[0].branch[0].out_channels == 8 and model.blocks[1].branch[0].out_channels == 4
    model = ShuffleNet().eval()
    prune_blocks(model, inputs, PruneConfig(ratio=0.3, round_to=4), pristine=copy.deepcopy(model))
    assert model.blocks[0].branch[0].out_channels % 4 == 0
    model = ShuffleNet().eval()
    prune_blocks(model, inputs, PruneConfig(ratio=0.5, scope="global"), pristine=copy.deepcopy(model))
    assert model.blocks[0].branch[0].out_channels + model.blocks[1].branch[0].out_channels <= 10
    model = ShuffleNet().eval()
    with pytest.raises(PruneError, match="stem.0") as err:  # its output leaves the block
        prune_blocks(model, inputs, PruneConfig(ratio=0.0, layer_ratios=("stem.0=0.5",)),
                     pristine=copy.deepcopy(model))
    assert err.value.layer == "stem.0"


@pytest.mark.parametrize("criterion", ["l1", "taylor", "bn_scale"])
def test_criteria(monkeypatch, criterion):
    _trace_fails(monkeypatch)
    model, inputs = ShuffleNet().eval(), _inputs()
    data = [(inputs, torch.tensor([0, 2]))]
    prune_structured(model, inputs, PruneConfig(ratio=0.5, criterion=criterion), data=data,
                     loss_fn=nn.functional.cross_entropy)
    assert model.blocks[1].branch[0].out_channels == 4


def test_no_block_internal_channels_keeps_the_trace_error(monkeypatch):
    _trace_fails(monkeypatch)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 36, 2)).eval()
    with pytest.raises(PruneError, match="could not trace") as err:
        prune_structured(model, {"input": torch.randn(2, 3, 8, 8)}, PruneConfig(ratio=0.5))
    assert "unstructured" in err.value.hint


def _tiny(name: str) -> nn.Module:
    """Tiny instances of the torchvision families Torch-Pruning cannot handle."""
    pytest.importorskip("torchvision")
    from torchvision.models import MaxVit, ShuffleNetV2, SwinTransformer
    from torchvision.models.swin_transformer import PatchMergingV2, SwinTransformerBlockV2

    torch.manual_seed(0)
    if name == "shufflenet":
        return ShuffleNetV2([1, 1, 1], [8, 16, 32, 64, 128], num_classes=3).eval()
    if name == "swin":
        return SwinTransformer([4, 4], 16, [1, 1], [2, 2], [2, 2], num_classes=3).eval()
    if name == "swin_v2":
        return SwinTransformer([4, 4], 16, [1, 1], [2, 2], [2, 2], num_classes=3, block=SwinTransformerBlockV2,
                               downsample_layer=PatchMergingV2).eval()
    return MaxVit((32, 32), 8, 2, [16], [1], 8, 0.0, num_classes=3).eval()


@pytest.mark.parametrize("name", ["shufflenet", "swin", "swin_v2", "maxvit"])
def test_torchvision_families_never_reach_torch_pruning(monkeypatch, name, tmp_path):
    """Torch-Pruning hangs on Swin/MaxViT and mis-maps ShuffleNet's channel shuffle: not even tried."""
    def forbidden(*_a: object, **_k: object) -> None:
        raise AssertionError("Torch-Pruning must not be used for this model")
    monkeypatch.setattr(_structured, "build_pruner", forbidden)
    model = _tiny(name)
    assert graph_blocker(model) is not None
    inputs = {"x": torch.randn(1, 3, 32, 32)}
    params = count_params(model)
    result = prune_structured(model, inputs, PruneConfig(ratio=0.5))
    assert result.method == "blocks" and "Torch-Pruning is not used" in result.note
    assert count_params(model) < params
    hidden = {"shufflenet": "stage2.0.branch2.0", "swin": "features.1.0.mlp.0", "swin_v2": "features.1.0.mlp.0",
              "maxvit": "blocks.0.layers.0.layers.MBconv.layers.conv_a.0"}[name]
    assert result.layers[hidden][1] == result.layers[hidden][0] // 2
    if name == "maxvit":  # MBConv's squeeze-excitation follows its channels
        se = model.blocks[0].layers[0].layers.MBconv.layers.squeeze_excitation
        assert se.fc1.in_channels == se.fc2.out_channels == result.layers[hidden][1]
    save_pruned(model, tmp_path)  # the generic storage restores the new widths (depthwise groups included)
    restored = load_pruned(tmp_path, _tiny(name))
    with torch.no_grad():
        torch.testing.assert_close(run_model(restored, inputs), run_model(model, inputs))


def test_ordinary_models_still_use_the_graph():
    pytest.importorskip("torchvision")
    from torchvision.models import resnet18

    model = resnet18(num_classes=3).eval()
    assert graph_blocker(model) is None
    result = prune_structured(model, {"x": torch.randn(1, 3, 32, 32)}, PruneConfig(ratio=0.5))
    assert result.method == "graph" and model.conv1.out_channels == 32
