"""Pruning passes the shared technique suite on tiny CNN, MLP and transformer models."""

from __future__ import annotations

import json

import pytest
import torch
from tests.conftest import TinyBert
from torch import nn

from slimkit.core.data import Batches
from slimkit.core.task import Metric, Task, accuracy, run_model
from slimkit.errors import UsageError
from slimkit.measure.flops import count_macs, count_params
from slimkit.plugins import config_from_dict
from slimkit.techniques.prune import (
    PruneConfig,
    PruneError,
    load_pruned,
    prune_model,
    prune_structured,
    save_pruned,
    sparsity_table,
)


class BranchyCNN(nn.Module):
    """Residual addition, concatenation, depthwise conv + BN: what breaks naive channel pruning."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.res = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU())
        self.branch = nn.Conv2d(16, 8, 1)
        self.mix = nn.Sequential(nn.Conv2d(24, 32, 1), nn.BatchNorm2d(32), nn.ReLU())
        self.grouped = nn.Conv2d(32, 32, 3, padding=1, groups=4)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = torch.relu(h + self.res(h))
        h = torch.cat([self.dw(h), self.branch(h)], dim=1)
        return self.head(self.grouped(self.mix(h)).mean(dim=(2, 3)))


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def _task(family: str) -> Task:
    torch.manual_seed(0)
    if family == "cnn":
        model, inputs = BranchyCNN(), {"x": torch.randn(24, 1, 8, 8)}
    elif family == "mlp":
        model, inputs = MLP(), {"features": torch.randn(24, 6)}
    else:
        ids = torch.randint(1, 60, (24, 10))
        mask = torch.ones_like(ids)
        mask[::3, 7:] = 0
        model = TinyBert()
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    targets = torch.randint(0, 3, (24,))
    data = Batches(inputs, targets, batch_size=8)
    return Task(f"tiny-{family}", model.eval(), {k: v[:1] for k, v in inputs.items()}, data, data, data,
                Metric("accuracy", accuracy), nn.functional.cross_entropy, throughput_batch=4)


FAMILIES = ["cnn", "mlp", "transformer"]


@pytest.fixture(params=FAMILIES)
def task(request: pytest.FixtureRequest) -> Task:
    return _task(request.param)


def _outputs(model: nn.Module, task: Task) -> torch.Tensor:
    inputs, _ = next(iter(task.eval_data))
    with torch.no_grad():
        return run_model(model.eval(), inputs)


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor"])
def test_structured_shrinks_and_keeps_output_shape(task, criterion):
    base = task.build_model()
    pruned, result = prune_model(base, task, PruneConfig(ratio=0.5, criterion=criterion))
    out = _outputs(pruned, task)
    assert out.shape == _outputs(base, task).shape and torch.isfinite(out).all()
    assert count_params(pruned) < count_params(base)
    assert count_macs(pruned, task.example_inputs) < count_macs(base, task.example_inputs)
    assert result.layers or result.heads
    assert count_params(task.build_model()) == count_params(base)  # the task's model is untouched


def test_unstructured_sparsity(task):
    pruned, result = prune_model(task.build_model(), task, PruneConfig(mode="unstructured", ratio=0.6))
    assert result.sparsity == pytest.approx(0.6, abs=0.02)
    assert all(abs(s - 0.6) < 0.05 for s in sparsity_table(pruned).values())
    assert torch.isfinite(_outputs(pruned, task)).all()


def test_unstructured_global_and_2_4(task):
    pruned, result = prune_model(task.build_model(), task,
                                 PruneConfig(mode="unstructured", ratio=0.5, scope="global"))
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    pruned, _ = prune_model(task.build_model(), task, PruneConfig(mode="unstructured", pattern="2:4"))
    for m in pruned.modules():
        if isinstance(m, nn.Linear) and m.in_features % 4 == 0:
            groups = (m.weight.reshape(-1, 4) != 0).sum(1)
            assert (groups <= 2).all()


def test_gradual_schedule_keeps_masks_through_finetuning():
    task = _task("mlp")
    cfg = PruneConfig(mode="unstructured", ratio=0.7, schedule="gradual", recover_epochs=3, lr=1e-2)
    pruned, result = prune_model(task.build_model(), task, cfg)
    assert result.sparsity == pytest.approx(0.7, abs=0.02)
    assert result.recovery is not None and result.recovery.epochs == 3


def test_recovery_finetune_and_distill():
    task = _task("cnn")
    for method in ("finetune", "distill"):
        _, result = prune_model(task.build_model(), task,
                                PruneConfig(ratio=0.5, recover_epochs=2, recover=method, lr=1e-2))
        assert result.recovery is not None and len(result.recovery.history) >= 1


def test_config_json_round_trip():
    cfg = PruneConfig(mode="unstructured", ratio=0.3, scope="global", layer_ratios=("net.0=0.1",),
                      pattern="none", recover_epochs=2)
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_bad_config_is_a_usage_error():
    from slimkit.errors import UsageError

    with pytest.raises(UsageError):
        PruneConfig(ratio=1.5)
    with pytest.raises(UsageError):
        PruneConfig(layer_ratios=("no-ratio",))
    with pytest.raises(UsageError):
        PruneConfig(mode="structured", pattern="2:4")
    # each was accepted, recorded in recipe.json and changed nothing
    with pytest.raises(UsageError, match="recover distill, lr 0.5 set the recovery, which is off"):
        PruneConfig(ratio=0.3, recover="distill", lr=0.5)
    with pytest.raises(UsageError, match="hidden_weight weighs hidden-state matching"):
        PruneConfig(ratio=0.3, recover_epochs=1, hidden_weight=3.0)
    with pytest.raises(UsageError, match="ratio 0 removes nothing"):
        PruneConfig(ratio=0.0)
    PruneConfig(ratio=0.0, target_macs=2.0)  # the MAC target sets the ratios


def test_bn_scale_needs_batchnorm_and_a_missed_mac_target_is_said():
    from slimkit.errors import UsageError

    task = _task("mlp")
    with pytest.raises(UsageError, match="has no BatchNorm layer"):  # pruned nothing, reported success
        prune_model(task.build_model(), task, PruneConfig(ratio=0.5, criterion="bn_scale"))
    cnn = _task("cnn")
    _, result = prune_model(cnn.build_model(), cnn, PruneConfig(target_macs=500.0))
    assert result.macs[0] / result.macs[1] < 450 and "short of the 500x asked" in result.note


def test_prune_reports_the_unpruned_model_on_each_runtime(tmp_path):
    """The runtime's own speed-up over torch eager read as pruning's."""
    import slimkit

    report = slimkit.prune(_task("cnn"), ratio=0.5, targets=["torch", "onnxruntime"], out=tmp_path, quick=True,
                           threads=1)
    pruned, ref = report.entry("pruned-onnxruntime"), report.entry("unpruned-onnxruntime")
    assert pruned.float_reference == ref.id and ref.params > pruned.params and ref.recipe == []


@pytest.mark.parametrize("mode", ["structured", "unstructured"])
def test_save_load_round_trip(task, mode, tmp_path):
    pruned, _ = prune_model(task.build_model(), task, PruneConfig(mode=mode, ratio=0.5))
    weights = save_pruned(pruned, tmp_path, sparse=mode == "unstructured")
    loaded = load_pruned(tmp_path, task.build_model())
    assert torch.allclose(_outputs(loaded, task), _outputs(pruned, task), atol=1e-6)
    if mode == "unstructured":
        dense = save_pruned(pruned, tmp_path / "dense")
        assert weights.stat().st_size < 0.75 * dense.stat().st_size


def test_bert_heads_and_ffn_update_config(tmp_path):
    task = _task("transformer")
    pruned, result = prune_model(task.build_model(), task, PruneConfig(head_ratio=0.5, ffn_ratio=0.5, ratio=0.0))
    att = pruned.encoder.bert.encoder.layer[0].attention.self
    assert att.num_attention_heads == 2 and att.query.out_features == 16
    assert pruned.encoder.bert.config.intermediate_size == 32
    assert all(v == [4, 2, 64, 32] for v in result.heads.values()) and len(result.heads) == 2
    save_pruned(pruned, tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["intermediate_size"] == 32 and saved["slimkit_pruning"]["layers"]
    loaded = load_pruned(tmp_path, task.build_model())
    assert loaded.encoder.bert.config.intermediate_size == 32
    assert loaded.encoder.bert.encoder.layer[1].attention.self.num_attention_heads == 2
    assert torch.allclose(_outputs(loaded, task), _outputs(pruned, task), atol=1e-6)


def test_round_to_keeps_multiples():
    task = _task("mlp")
    pruned, _ = prune_model(task.build_model(), task, PruneConfig(ratio=0.6, round_to=8))
    assert pruned.net[0].out_features % 8 == 0 and pruned.net[2].out_features % 8 == 0


def test_round_to_rounds_to_the_nearest_multiple_and_says_so():
    """Torch-Pruning rounds kept channels down (30% of 32 at round_to=8 removed 50%); slimkit rounds
    to the nearest multiple and notes every group whose removal rounding moved."""
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))
    inputs = {"input": torch.randn(1, 4)}
    note = prune_structured(net, inputs, PruneConfig(ratio=0.3, round_to=8)).note
    assert (net[0].out_features, net[2].out_features) == (24, 48)  # 22 -> 24, 45 -> 48 (down: 16, 40)
    assert "moved the removal of 2 of 2 channel groups" in note  # small moves were not said (10% threshold)
    net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 2))
    result = prune_structured(net, inputs, PruneConfig(ratio=0.3, round_to=16))
    assert (net[0].out_features, net[2].out_features) == (16, 48)
    assert "round_to=16 moved the removal of 2 of 2 channel groups" in result.note
    assert "32 channels: 10 asked, 16 removed" in result.note
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # fewer channels than the multiple
    note = prune_structured(net, {"input": torch.randn(1, 4)}, PruneConfig(ratio=0.5, round_to=16)).note
    assert net[0].out_features == 4  # kept as asked, not rounded to zero
    assert "1 group(s) narrower than round_to=16 keep an unrounded width" in note


def test_layer_ratios_and_global_scope():
    task = _task("mlp")
    pruned, result = prune_model(task.build_model(), task, PruneConfig(ratio=0.0, layer_ratios=("net.0=0.5",)))
    assert pruned.net[0].out_features == 16 and pruned.net[2].out_features == 32
    pruned, _ = prune_model(task.build_model(), task, PruneConfig(ratio=0.5, scope="global"))
    assert pruned.net[0].out_features + pruned.net[2].out_features < 64


def test_unknown_layer_is_named():
    """A usage error (exit 2) in either mode: unstructured pruning used to skip unknown names silently."""
    task = _task("mlp")
    for mode in ("structured", "unstructured"):
        with pytest.raises(UsageError, match="nope"):
            prune_model(task.build_model(), task, PruneConfig(mode=mode, ignore=("nope",)))


def test_options_of_the_other_mode_are_refused():
    for kw in ({"target_macs": 2.0}, {"round_to": 8}, {"criterion": "bn_scale"}):
        with pytest.raises(UsageError, match="apply to structured pruning"):
            PruneConfig(mode="unstructured", **kw)
    with pytest.raises(UsageError, match="2 of every 4"):
        PruneConfig(mode="unstructured", pattern="2:4", ratio=0.2)


def test_unprunable_layer_gives_error_naming_it():
    class Fixed(nn.Module):
        """Reshapes with a hard-coded channel count: pruning conv would silently break it."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.head = nn.Linear(8 * 16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).reshape(x.shape[0], 8 * 16))

    inputs = {"x": torch.randn(1, 1, 4, 4)}
    with pytest.raises(PruneError, match="conv|head"):
        prune_structured(Fixed().eval(), inputs, PruneConfig(ratio=0.5))


@pytest.mark.parametrize("family", ["cnn", "mlp", pytest.param("transformer", marks=pytest.mark.slow)])
@pytest.mark.parametrize("mode", ["structured", "unstructured"])
def test_pruned_model_exports_to_onnx(family, mode, tmp_path):
    pytest.importorskip("onnxruntime")
    from slimkit.export.onnx import export_onnx

    task = _task(family)
    pruned, _ = prune_model(task.build_model(), task, PruneConfig(mode=mode, ratio=0.5))
    parity = export_onnx(pruned, task.example_inputs, tmp_path / "m.onnx")
    assert parity is None or parity.cosine > 0.999


def test_sensitivity_reaches_mac_target():
    task = _task("cnn")
    base = task.build_model()
    pruned, result = prune_model(base, task, PruneConfig(target_macs=1.5))
    assert result.sensitivity is not None and result.sensitivity.table
    assert result.macs[0] / result.macs[1] >= 1.5


@pytest.mark.slow
def test_api_and_cli_on_digits_cnn(tmp_path):
    import slimkit
    from slimkit.cli.main import main

    report = slimkit.prune("digits-cnn", ratio=0.3, targets=["torch", "onnxruntime"], out=tmp_path / "a", quick=True)
    data = json.loads((tmp_path / "a" / "report.json").read_text())
    assert data["pruning"]["macs_reduction"] > 1.3 and report.baseline.id == "baseline"
    assert {c["target"] for c in data["candidates"]} >= {"torch", "onnxruntime"}
    code = main(["prune", "--task", "digits-cnn", "--ratio", "0.5", "--unstructured", "--targets", "torch",
                 "--quick", "--out", str(tmp_path / "b")])
    assert code == 0
    data = json.loads((tmp_path / "b" / "report.json").read_text())
    assert data["pruning"]["sparsity"] == pytest.approx(0.5, abs=0.02)


def test_bn_scale_criterion_on_cnn():
    task = _task("cnn")
    base = task.build_model()
    pruned, result = prune_model(base, task, PruneConfig(ratio=0.5, criterion="bn_scale"))
    assert result.layers and count_params(pruned) < count_params(base)
    assert _outputs(pruned, task).shape == _outputs(base, task).shape


def test_distill_recovery_matches_bert_hidden_states_and_stops_on_validation():
    from slimkit.techniques.prune._recover import Distilled, hidden_layers

    task = _task("transformer")
    teacher = task.build_model()
    student = task.build_model()
    prune_structured(student, task.example_inputs, PruneConfig(ratio=0.5))
    names = hidden_layers(student, teacher, task.example_inputs)
    assert names == [f"encoder.bert.encoder.layer.{i}.output.LayerNorm" for i in range(2)]
    module = Distilled(student, teacher, task.loss, names, 1.0)
    inputs, targets = next(iter(task.train_data))
    out = module(**inputs)
    total = module.loss(out, targets)
    module.hidden_weight = 0.0
    assert float(total.detach()) > float(module.loss(out, targets).detach())  # the hidden-state term is there
    module.remove()

    _, result = prune_model(task.build_model(), task,
                            PruneConfig(ratio=0.5, recover_epochs=2, recover="distill", lr=1e-3), floor=-1.0)
    rec = result.recovery
    assert rec is not None and rec.hidden_layers == names
    assert rec.selection is not None and rec.selection.startswith("validation")
    assert "val_metric" in rec.history[0] and result.metric_after_recovery is not None


def test_transfer_data_feeds_distillation(monkeypatch):
    from slimkit.techniques.prune import _recover

    task = _task("mlp")
    transfer = Batches({"features": torch.randn(40, 6)}, torch.zeros(40, dtype=torch.long), batch_size=8)
    task.transfer_data = lambda: transfer  # built on first use
    split = _recover._split
    seen = []
    monkeypatch.setattr(_recover, "_split", lambda data: (seen.append(data), split(data))[1])
    prune_model(task.build_model(), task, PruneConfig(ratio=0.5, recover_epochs=1, recover="distill"))
    prune_model(task.build_model(), task, PruneConfig(ratio=0.5, recover_epochs=1, recover="finetune"))
    assert seen == [transfer, task.train_data]  # distillation reads the transfer set, fine-tuning the labels


def test_activation_criterion_scores_heads_and_neurons_from_data():
    from slimkit.techniques.prune._transformer import activation_scores, bert_layers

    task = _task("transformer")
    model = task.build_model()
    layers = bert_layers(model)
    heads, ffn = activation_scores(model, layers, task.calibration_data, 2)
    assert [h.shape[0] for h in heads] == [4, 4] and [f.shape[0] for f in ffn] == [64, 64]
    assert all(bool((h > 0).all()) for h in heads)
    # A neuron whose output column is zero contributes nothing: it must score zero.
    with torch.no_grad():
        layers[0][1].output.dense.weight[:, 5] = 0.0
    _, ffn = activation_scores(model, layers, task.calibration_data, 2)
    assert float(ffn[0][5]) == 0.0
    result = prune_structured(model, task.example_inputs, PruneConfig(ratio=0.5, criterion="activation"),
                              data=task.calibration_data)
    assert all(v[1] == 2 for v in result.heads.values())
    with pytest.raises(PruneError, match="activation"):
        prune_structured(_task("mlp").build_model(), {"features": torch.randn(1, 6)},
                         PruneConfig(ratio=0.5, criterion="activation"))


def test_reconstruction_refits_bert_layers_towards_the_unpruned_model():
    from slimkit.techniques.prune._reconstruct import reconstruct_bert

    task = _task("transformer")
    teacher = task.build_model()
    ids = torch.randint(1, 60, (96, 12))
    data = Batches({"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)},
                   torch.zeros(96, dtype=torch.long), batch_size=8)
    student = task.build_model()
    prune_structured(student, task.example_inputs, PruneConfig(ratio=0.5))
    before = _outputs(student, task)
    result = reconstruct_bert(student, teacher, data)
    names = [f"encoder.bert.encoder.layer.{i}.{p}.dense" for i in range(2) for p in ("attention.output", "output")]
    assert list(result.layers) == names and result.tokens == 96 * 12
    assert all(after <= err for err, after in result.layers.values())
    assert any(after < 0.9 * err for err, after in result.layers.values())  # it really helps somewhere
    want = _outputs(teacher, task)
    assert float((_outputs(student, task) - want).norm()) < float((before - want).norm())

    # Through prune_model: on by default for transformers, reported, and can be switched off.
    _, res = prune_model(task.build_model(), task, PruneConfig(ratio=0.5))
    assert res.reconstruction is not None and res.to_dict()["reconstruction"]["tokens"] > 0
    _, res = prune_model(task.build_model(), task, PruneConfig(ratio=0.5, reconstruct=False))
    assert res.reconstruction is None
    _, res = prune_model(_task("mlp").build_model(), _task("mlp"), PruneConfig(ratio=0.5))
    assert res.reconstruction is None  # only the transformer layout has the re-fit


def test_global_activation_scope_ranks_heads_and_neurons_across_layers():
    task = _task("transformer")
    model = task.build_model()
    with torch.no_grad():  # make layer 1's FFN matter far more than layer 0's
        model.encoder.bert.encoder.layer[1].output.dense.weight.mul_(20.0)
    cfg = PruneConfig(ratio=0.0, head_ratio=0.5, ffn_ratio=0.5, criterion="activation", scope="global", round_to=16)
    result = prune_structured(model, task.example_inputs, cfg, data=task.calibration_data)
    sizes = list(result.heads.values())
    assert sum(s[1] for s in sizes) == 4  # half of the 8 heads, wherever they score lowest
    assert sum(s[3] for s in sizes) <= 64 and all(s[3] % 16 == 0 and s[3] >= 16 for s in sizes)
    assert sizes[1][3] > sizes[0][3]  # the louder layer keeps more neurons


def test_distillation_recovery_keeps_embedding_tables_fixed():
    from slimkit.techniques.prune._recover import recover

    task = _task("transformer")
    student, teacher = task.build_model(), task.build_model()
    prune_structured(student, task.example_inputs, PruneConfig(ratio=0.5))
    tables = [m.weight for m in student.modules() if isinstance(m, nn.Embedding)]
    assert tables
    before = [t.detach().clone() for t in tables]
    other = next(p for n, p in student.named_parameters() if "intermediate" in n).detach().clone()
    recover(student, task, epochs=1, lr=1e-2, method="distill", teacher=teacher)
    assert all(torch.equal(a, t) for a, t in zip(before, tables, strict=True))
    assert all(t.requires_grad for t in tables)  # restored after
    assert not torch.equal(other, next(p for n, p in student.named_parameters() if "intermediate" in n))
    recover(student, task, epochs=1, lr=1e-2, method="finetune")
    assert not all(torch.equal(a, t) for a, t in zip(before, tables, strict=True))  # fine-tuning trains them


def test_distillation_recovery_trains_without_dropout_and_restores_it():
    from slimkit.techniques.prune._recover import recover

    task = _task("transformer")
    student, teacher = task.build_model(), task.build_model()
    prune_structured(student, task.example_inputs, PruneConfig(ratio=0.5))
    drops = [m for m in student.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(m.p > 0 for m in drops)
    seen: list[set[float]] = []
    recover(student, task, epochs=1, lr=1e-3, method="distill", teacher=teacher,
            on_epoch=lambda _e, _r: seen.append({m.p for m in drops}))
    assert seen == [{0.0}] and all(m.p > 0 for m in drops)  # off while distilling, restored after
    recover(student, task, epochs=1, lr=1e-3, method="finetune",
            on_epoch=lambda _e, _r: seen.append({m.p for m in drops}))
    assert seen[-1] != {0.0}  # fine-tuning on labels keeps dropout as regularisation


def test_distillation_on_a_transfer_set_stops_only_once_clear_of_the_floor(monkeypatch):
    from slimkit.techniques.prune import _recover

    task = _task("mlp")
    task.transfer_data = Batches({"features": torch.randn(40, 6)}, torch.zeros(40, dtype=torch.long), batch_size=8)
    teacher = task.build_model()
    readings: list[float] = []

    def scripted(model, data, metric):  # teacher 1.0 everywhere; the student reads 0.5 before recovery,
        if model is teacher:  # then 0.92, 0.96, 0.99, ... after each epoch (and at the check after it)
            return 1.0
        readings.append(0.0)
        return [0.5, 0.92, 0.96, 0.99, 0.99, 0.99][len(readings) - 1]

    monkeypatch.setattr(_recover, "evaluate_torch", scripted)
    # floor 0.9: fine-tuning stops at the first validation reading >= 0.9 ...
    r = _recover.recover(task.build_model(), task, epochs=4, lr=1e-3, method="finetune", teacher=teacher, floor=0.9)
    assert (r.epochs, r.stopped_early) == (1, True)
    # ... distillation on the transfer set waits for 0.9 + half the allowed 0.1
    readings.clear()
    r = _recover.recover(task.build_model(), task, epochs=4, lr=1e-3, method="distill", teacher=teacher, floor=0.9)
    assert (r.epochs, r.stopped_early) == (2, True) and "half the allowed drop" in str(r.selection)
