"""Quantization: the shared suite over every offered scheme x target on tiny models, plus the
sensitivity / accuracy-aware / QAT paths, the never-slower guard, errors and the CLI.

Tolerances (stated): a quantized tiny model's output keeps a cosine to the float model of at
least MIN_COSINE[scheme], and its accuracy (20 random-label items) stays within METRIC_TOL points.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tests.conftest import FAMILIES, make_tiny_task

from slimkit.core.data import batch_of
from slimkit.core.task import run_model
from slimkit.errors import UsageError
from slimkit.export.parity import compare
from slimkit.measure.measure import evaluate_deployed
from slimkit.plugins import config_from_dict
from slimkit.techniques.quantize import SCHEMES, QuantizeConfig, check, matrix_rows, quantize_for_target, support

MIN_COSINE = {"int8-dynamic": 0.98, "int8-static": 0.95, "int8-weight-only": 0.99, "int4-weight-only": 0.8,
              "fp16": 0.999, "bf16": 0.99}
METRIC_TOL = 15.0  # points: 3 of the 20 items
TARGETS = ("torch", "onnxruntime", "openvino", "torch-compile", "tensorrt")
OFFERED = [(s, t) for s, t, ok, _ in matrix_rows() if ok]
NOT_OFFERED = [(s, t) for s in SCHEMES for t in TARGETS if not support(s, t).ok]


def _config(scheme: str, target: str, **kw: object) -> QuantizeConfig:
    # A small group size so the tiny layers (4..16 wide) are really int4, not the int8 fallback.
    # Calibration samples only where the scheme calibrates (elsewhere they are refused as unused).
    sized = {"samples": 8} if scheme == "int8-static" else {"group_size": 4} if scheme == "int4-weight-only" else {}
    return QuantizeConfig(scheme, target, **{**sized, **kw})  # type: ignore[arg-type]


def _params() -> list:
    out = []
    for scheme, target in OFFERED:
        for family in FAMILIES:
            marks = [] if family == "mlp" else [pytest.mark.slow]  # the mlp run covers every combination fast
            out.append(pytest.param(scheme, target, family, marks=marks, id=f"{scheme}-{target}-{family}"))
    return out


@pytest.mark.parametrize(("scheme", "target", "family"), _params())
def test_offered_combination(scheme: str, target: str, family: str, tmp_path: Path) -> None:
    task = make_tiny_task(family)
    model = task.build_model()
    result = quantize_for_target(model, task, _config(scheme, target), tmp_path, threads=1)
    deployed = result.deployed
    assert deployed.artifact is not None and deployed.artifact.exists() and deployed.size_bytes() > 0
    for batch in (1, 5):
        inputs = batch_of(task.example_inputs, batch)
        got = deployed.run(inputs)
        with torch.no_grad():
            ref = run_model(model, inputs)
        assert got.shape == ref.shape
        assert torch.isfinite(got).all()
        assert compare(ref, got).cosine >= MIN_COSINE[scheme]
    float_metric = task.metric.compute(*_all_outputs(model, task))
    metric, _ = evaluate_deployed(deployed, task)
    assert abs(metric - float_metric) <= METRIC_TOL
    raw = json.loads(json.dumps(result.config.to_dict()))
    assert config_from_dict(raw) == result.config


def _all_outputs(model: torch.nn.Module, task) -> tuple[torch.Tensor, torch.Tensor]:
    outs, tgts = [], []
    with torch.no_grad():
        for inputs, targets in task.eval_data:
            outs.append(run_model(model, inputs))
            tgts.append(targets)
    return torch.cat(outs), torch.cat(tgts)


@pytest.mark.parametrize(("scheme", "target"), NOT_OFFERED, ids=[f"{s}-{t}" for s, t in NOT_OFFERED])
def test_unsupported_combination_says_why_and_what_works(scheme: str, target: str) -> None:
    with pytest.raises(UsageError) as err:
        check(scheme, target)
    assert "not offered" in err.value.message and err.value.hint and err.value.exit_code == 2


def test_config_validation() -> None:
    with pytest.raises(UsageError, match="unknown quantization scheme"):
        QuantizeConfig("int3", "openvino")
    with pytest.raises(UsageError, match="int8-static"):
        QuantizeConfig("int8-dynamic", "onnxruntime", calibration="minmax")
    with pytest.raises(UsageError, match="not available"):
        check("int8-static", "openvino", "entropy")  # NNCF has no KL calibration: a clear error
    with pytest.raises(UsageError, match="quantization-aware"):
        QuantizeConfig("int4-weight-only", "openvino", qat_epochs=1)
    with pytest.raises(UsageError, match="'max_drop' must be a finite number, not NaN"):
        QuantizeConfig("int8-static", "onnxruntime", max_drop=float("nan"))
    with pytest.raises(UsageError, match="'qat_lr' must be a finite number, not inf"):  # failed only after the baseline
        QuantizeConfig("int8-static", "onnxruntime", qat_epochs=1, qat_lr=float("inf"))
    with pytest.raises(UsageError, match="not applied after quantization-aware"):
        QuantizeConfig("int8-static", "onnxruntime", qat_epochs=1, max_drop=0.5)


@pytest.mark.parametrize(
    ("scheme", "target", "options", "option"),
    [  # each was accepted, recorded in recipe.json, and changed nothing
        ("int8-weight-only", "openvino", {"per_channel": False}, "--per-tensor"),
        ("fp16", "torch", {"per_channel": False}, "--per-tensor"),
        ("int8-dynamic", "onnxruntime", {"samples": 5}, "--samples"),
        ("fp16", "torch", {"group_size": 32}, "--group-size"),
        ("int8-static", "onnxruntime", {"smooth_quant": True}, "--smooth-quant"),
        ("int8-static", "onnxruntime", {"bias_correction": False}, "--no-bias-correction"),
        ("int8-static", "openvino", {"bias_correction": False, "qat_epochs": 1}, "--no-bias-correction"),
        ("fp16", "openvino", {"exclude": ("features.0",)}, "--exclude"),  # reported float, was fp16
    ],
)
def test_an_option_the_scheme_does_not_use_is_refused(scheme, target, options, option) -> None:
    with pytest.raises(UsageError, match=f"{option}.* applies to .*not to {scheme} on {target}"):
        QuantizeConfig(scheme, target, **options)


def test_a_misspelled_target_gets_a_suggestion() -> None:
    with pytest.raises(UsageError) as err:
        check("int8-static", "ONNXRuntime")
    assert err.value.message == "unknown target 'ONNXRuntime'" and "did you mean 'onnxruntime'" in err.value.hint


def test_options_where_they_apply_are_accepted() -> None:
    QuantizeConfig("int8-static", "openvino", per_channel=False, samples=5, smooth_quant=True, bias_correction=False)
    QuantizeConfig("int8-dynamic", "onnxruntime", per_channel=False, exclude=("fc",))
    QuantizeConfig("int4-weight-only", "openvino", group_size=32, exclude=("fc",))
    QuantizeConfig("int8-static", "onnxruntime", qat_epochs=1, per_channel=False, samples=5)


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy"])
def test_onnxruntime_calibration_methods(calibration: str, tmp_path: Path) -> None:
    task = make_tiny_task("mlp")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", calibration=calibration),
                            tmp_path, threads=1)
    assert r.details["calibration"] == calibration and torch.isfinite(r.deployed.run(task.example_inputs)).all()


def test_onnxruntime_static_int8_of_a_transformer_quantizes_only_its_linear_layers(tmp_path: Path) -> None:
    """The attention mask's addition (a range down to the float minimum), softmax and the scores' matmul
    stay float: quantizing them all, ONNX Runtime's default, wrecked MiniLM (mean cosine 0.38)."""
    import onnx

    task = make_tiny_task("bert")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime"), tmp_path, threads=1)
    assert r.details["quantized_ops"].startswith("weighted MatMul/Gemm/Conv")
    pre = onnx.load(str(tmp_path / "float.pre.onnx")).graph
    weights = {i.name for i in pre.initializer}
    linear_inputs = {i for n in pre.node if n.op_type in ("MatMul", "Gemm") and any(w in weights for w in n.input)
                     for i in n.input if i not in weights}
    graph = onnx.load(str(r.deployed.artifact)).graph
    quantized = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert quantized and quantized <= linear_inputs
    # Only the layers read the int8 copy: the residual additions beside them read the float tensor
    # (ONNX Runtime points every reader at the dequantized copy; MiniLM mean cosine 0.9895 -> 0.9924).
    producer = {o: n.op_type for n in graph.node for o in n.output}
    readers = {n.op_type for n in graph.node for i in n.input if producer.get(i) == "DequantizeLinear"}
    assert readers <= {"MatMul", "Gemm"} and r.details["float_readers"] > 0


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "mse"])
def test_openvino_calibration_methods(calibration: str, tmp_path: Path) -> None:
    task = make_tiny_task("mlp")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "openvino", calibration=calibration),
                            tmp_path, threads=1)
    assert r.details["calibration"] == calibration and torch.isfinite(r.deployed.run(task.example_inputs)).all()


def test_sensitivity_and_accuracy_aware_fallback(tmp_path: Path) -> None:
    task = make_tiny_task("mlp")
    # A zero budget: layers go to float, most sensitive first, until nothing is lost (at worst all).
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", max_drop=0.0),
                            tmp_path, threads=1, with_sensitivity=True)
    layers = {row["layer"] for row in r.sensitivity}
    assert len(layers) == 2 and all({"drop", "metric", "origin", "output_error"} <= set(row) for row in r.sensitivity)
    assert set(r.float_layers) <= layers
    assert r.details["accuracy_aware"]["met"] is True
    assert r.deployed.details["quantization"]["float_layers"] == r.float_layers


def test_excluded_layers_stay_float_on_openvino(tmp_path: Path) -> None:
    from slimkit.techniques.quantize._openvino import openvino_layers
    from slimkit.techniques.quantize._registry import export_float

    task = make_tiny_task("mlp")
    model = task.build_model()
    xml = export_float(model, task.example_inputs, "openvino", tmp_path)
    first = openvino_layers(xml)[0][0]
    r = quantize_for_target(model, task, _config("int8-static", "openvino", exclude=(first,)), tmp_path / "q",
                            threads=1, float_artifact=xml)
    assert r.float_layers == [first]


@pytest.mark.parametrize("target", ["openvino", "onnxruntime"])
def test_layers_are_named_after_torch_modules_and_excluded_by_them(target: str, tmp_path: Path) -> None:
    """Exporters rename folded weights (the dynamo exporter's "val_52", OpenVINO's "Multiply_2980"), so
    layers are matched to modules by weight value: the sensitivity table, ``exclude`` and the notes
    speak the model's own names. A module containing layers excludes all of them."""
    from slimkit.techniques.quantize._apply import calibration_items
    from slimkit.techniques.quantize._registry import backend_class, export_float

    task = make_tiny_task("bert")
    model = task.build_model()
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    cfg = _config("int8-static", target)
    float_artifact = export_float(model, task.example_inputs, target, tmp_path)
    backend = backend_class(target)(cfg, float_artifact, tmp_path, 1, task.example_inputs,
                                    calibration_items(task.calibration_data, 8), True)
    backend.know_modules(model)
    assert linears <= {origin for _, origin in backend.layers()}
    block = "encoder.bert.encoder.layer.0.attention"
    r = quantize_for_target(model, task, _config("int8-static", target, exclude=(block, "head")), tmp_path / "q",
                            threads=1, float_artifact=float_artifact)
    named = r.details["float_layer_modules"]
    wanted = {n for n in linears if n.startswith(f"{block}.") or n == "head"}
    assert {m for m in named.values() if m in linears} == wanted
    assert all(m.startswith(block) for m in named.values() if m != "head")  # OpenVINO: the scores' matmuls too
    assert set(r.float_layers) == set(named)
    with pytest.raises(UsageError, match="'encoder.bert.nonsense'"):  # never quietly quantized after all
        quantize_for_target(model, task, _config("int8-static", target, exclude=("encoder.bert.nonsense",)),
                            tmp_path / "bad", threads=1, float_artifact=float_artifact)


def test_partial_quantization_is_reported_not_hidden(tmp_path: Path, monkeypatch) -> None:
    """What a scheme leaves out is named: torchao's int8 covers Linear layers only; NNCF's int4 keeps
    convolutions in int8; OpenVINO bf16 on a CPU without bf16 units would run f32 under a bf16 label."""
    from slimkit.errors import UnavailableError
    from slimkit.techniques.quantize import _support

    task = make_tiny_task("cnn")
    model = task.build_model()
    convs = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    r = quantize_for_target(model, task, _config("int8-dynamic", "torch"), tmp_path / "t", threads=1)
    assert convs and set(r.float_layers) == convs == set(r.details["float_layers"])
    r = quantize_for_target(model, task, _config("int4-weight-only", "openvino"), tmp_path / "o", threads=1)
    assert len(r.details["int8_backup_layers"]) == len(convs) and r.details["int4_layers"] >= 1
    monkeypatch.setitem(_support._PRECISION_CAPS, "caps", "FP32 INT8 BIN")
    with pytest.raises(UnavailableError, match="no bf16 units"):
        check("bf16", "openvino")
    assert not next(ok for s, t, ok, _ in matrix_rows() if (s, t) == ("bf16", "openvino"))
    monkeypatch.setitem(_support._PRECISION_CAPS, "caps", "FP32 BF16 INT8")
    assert check("bf16", "openvino").ok


def test_qat_rejects_an_excluded_name_the_model_does_not_have(tmp_path: Path) -> None:
    task = make_tiny_task("mlp")
    with pytest.raises(UsageError, match="'net.9'"):
        quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", qat_epochs=1,
                                                              exclude=("net.9",)), tmp_path, threads=1)


@pytest.mark.parametrize("target", ["openvino", "onnxruntime"])
def test_qat_gives_a_real_int8_artifact(target: str, tmp_path: Path) -> None:
    task = make_tiny_task("cnn")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", target, qat_epochs=1, qat_lr=1e-3),
                            tmp_path, threads=1)
    assert r.details["qat"]["layers"] == 2
    assert r.details["qat"]["export_parity_vs_fake_quant"]["cosine"] > 0.95
    if target == "openvino":
        import openvino as ov

        ops = {op.get_type_name() for op in ov.Core().read_model(str(r.deployed.artifact)).get_ops()}
        assert "FakeQuantize" in ops  # int8 in OpenVINO's CPU plugin, int8 weights on disk
    else:
        import onnx

        ops = {n.op_type for n in onnx.load(str(r.deployed.artifact)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_qat_keeps_its_result_when_embedding_tables_cannot_be_made_int8(tmp_path: Path, monkeypatch) -> None:
    """Int8 embedding tables only save space: an NNCF failure there leaves them fp32, the trained model stays."""
    from slimkit.techniques.quantize import _openvino

    def fail(xml: Path) -> list[str]:
        raise RuntimeError("compression backend exploded")

    monkeypatch.setattr(_openvino, "int8_embedding_tables", fail)
    task = make_tiny_task("cnn")
    said: list[str] = []
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "openvino", qat_epochs=1, qat_lr=1e-3),
                            tmp_path, threads=1, say=said.append)
    assert "exploded" in r.details["qat"]["int8_embedding_tables"] and any("fp32" in m for m in said)
    assert r.deployed.run(task.example_inputs).shape[0] == 1


@pytest.mark.parametrize("weight_max", [127, 64])  # 64: the 7-bit grid for CPUs whose int8 dot product saturates
def test_qat_per_tensor_fake_quant_uses_one_scale_per_weight(weight_max: int) -> None:
    from slimkit.techniques.quantize._qat import FakeQuant

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3)
    with torch.no_grad():
        conv.weight[0] *= 10  # a wide channel: per channel keeps it apart, per tensor shares its scale
    for per_channel in (True, False):
        fq = FakeQuant(conv, per_channel, weight_max)
        fq.observing = False
        scale = fq._weight_scale()
        q = fq._weight().detach()
        assert scale.shape == ((4,) if per_channel else ())
        steps = q / (scale.view(-1, 1, 1, 1) if per_channel else scale)
        assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= weight_max + 1e-3
        assert bool(steps.abs().amax(dim=(1, 2, 3)).round().eq(weight_max).all()) is per_channel
    fq = FakeQuant(conv, per_channel=False, weight_max=weight_max)  # a per-tensor range below max |w| clips
    fq.observing = False
    fq.range_fraction.fill_(0.25)
    steps = fq._weight().detach() / fq._weight_scale()
    assert steps.abs().max().round() == weight_max


def test_int8_dot_saturates_reads_the_vnni_flags() -> None:
    from slimkit.measure.env import int8_dot_saturates

    assert int8_dot_saturates({"avx2", "fma"}) and int8_dot_saturates({"avx512f", "avx2"})
    assert not any(int8_dot_saturates({"avx2", f}) for f in ("avx_vnni", "avx512_vnni", "amx_int8"))
    assert isinstance(int8_dot_saturates(), bool)  # this machine, whichever it is


def test_qat_per_tensor_range_clips_weights_that_only_meet_zeros() -> None:
    from slimkit.techniques.quantize._qat import FakeQuant, _observe

    # A depthwise conv whose second input channel is dead (all zeros) but whose weights there are
    # 1000x larger, as after folding a BatchNorm with a near-zero variance.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2, bias=False)
    with torch.no_grad():
        conv.weight[1] *= 1000
    model = torch.nn.Sequential(FakeQuant(conv, per_channel=False))
    items = [{"input": torch.cat([torch.randn(1, 1, 6, 6), torch.zeros(1, 1, 6, 6)], 1)} for _ in range(4)]
    _observe(model, items, True)
    fq = model[0]
    assert fq.searched == 4 and float(fq.range_fraction) < 0.05
    fq.freeze()
    x = items[0]["input"]
    with torch.no_grad():
        ref = conv(x)
        err_searched = float((fq(x) - ref)[:, 0].abs().max())
        fq.range_fraction.fill_(1.0)
        fq.freeze()
        err_maxabs = float((fq(x) - ref)[:, 0].abs().max())
    assert err_searched < 0.1 * err_maxabs


def test_fold_batchnorms_is_exact_and_finds_attribute_pairs() -> None:
    from slimkit.techniques.quantize._qat import fold_batchnorms

    task = make_tiny_task("cnn")  # conv and bn are attributes, not a Sequential
    model = task.build_model()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2.0)
        model.bn.running_mean.uniform_(-1.0, 1.0)
        ref = run_model(model, task.example_inputs)
    assert fold_batchnorms(model, task.example_inputs) == ["bn"]
    assert isinstance(model.bn, torch.nn.Identity)
    with torch.no_grad():
        assert torch.allclose(run_model(model, task.example_inputs), ref, atol=1e-5)


def test_fold_batchnorms_leaves_a_conv_output_used_twice() -> None:
    from slimkit.techniques.quantize._qat import fold_batchnorms

    class Branch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second use

    model = Branch().eval()
    with torch.no_grad():
        model.bn.running_var.fill_(4.0)
    assert fold_batchnorms(model, {"x": torch.randn(1, 1, 5, 5)}) == []
    assert isinstance(model.bn, torch.nn.BatchNorm2d)


@pytest.mark.parametrize("target", ["openvino", "onnxruntime"])
def test_qat_per_tensor_deploys_per_tensor_weights(target: str, tmp_path: Path) -> None:
    task = make_tiny_task("cnn")
    cfg = _config("int8-static", target, qat_epochs=1, qat_lr=1e-3, per_channel=False)
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    r = quantize_for_target(task.build_model(), task, cfg, tmp_path, threads=1)
    info = r.details["qat"]
    assert info["weights"] == "per-tensor" and info["folded_batchnorms"] == 1 and info["layers"] == 2
    # The runtime's per-tensor grid on the folded weight is the one trained on: the export matches.
    assert info["export_parity_vs_fake_quant"]["cosine"] > 0.999
    if target == "onnxruntime":
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(r.deployed.artifact)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weight_scales = [inits[n.input[1]] for n in graph.node if n.op_type == "DequantizeLinear"
                         and n.input[0] in inits and inits[n.input[0]].ndim > 1]
        assert len(weight_scales) == 2 and all(s.size == 1 for s in weight_scales)


def test_never_slower_guard_uses_the_float_model_on_the_same_target() -> None:
    from slimkit.measure.latency import Latency
    from slimkit.measure.measure import Measurement
    from slimkit.pipeline import finalize
    from slimkit.report.schema import Entry, Report

    def entry(eid: str, target: str, ms: float, ref: str | None = None) -> Entry:
        m = Measurement("accuracy", 90.0, {}, Latency(1, ms, ms, (ms, ms), ms, 10), 8, 1.0, 100, 0)
        return Entry(eid, [], target, m, 1, 1, None, float_reference=ref)

    report = Report("t", "cmd", {}, entry("baseline", "torch", 10.0))
    report.candidates = [entry("torch-int8-dynamic", "torch", 12.0, "baseline"),
                         entry("ov-fp32", "openvino", 3.0), entry("ov-int8", "openvino", 4.0, "ov-fp32")]
    finalize(report, 1.0)
    assert report.best == "ov-fp32"
    assert any("openvino" in n for n in report.entry("ov-int8").notes)
    assert any("slower" in n for n in report.entry("torch-int8-dynamic").notes)


@pytest.mark.slow  # trains the digits-cnn baseline once per session, then measures three models
def test_cli_quantize_writes_artifact_recipe_and_report(tmp_path: Path) -> None:
    from slimkit.cli.main import main

    out = tmp_path / "run"
    code = main(["quantize", "--task", "digits-cnn", "--scheme", "int8-dynamic", "--target", "onnxruntime",
                 "--threads", "1", "--quick", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["baseline"]["target"] == "torch"
    ids = [c["id"] for c in report["candidates"]]
    assert ids == ["onnxruntime-fp32", "onnxruntime-int8-dynamic"]
    q = report["candidates"][1]
    assert q["float_reference"] == "onnxruntime-fp32" and q["recipe"][0]["type"] == "quantize"
    assert q["size_bytes"] < 0.5 * report["candidates"][0]["size_bytes"]
    assert report["quantization"]["scheme"] == "int8-dynamic"
    assert (out / q["artifact"]).exists()
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert config_from_dict(recipe["steps"][0]) == QuantizeConfig("int8-dynamic", "onnxruntime")
    assert recipe["targets"] == ["onnxruntime"] and recipe["command"] == "quantize"


def test_cli_unsupported_combination_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from slimkit.cli.main import main

    code = main(["quantize", "--task", "digits-cnn", "--scheme", "fp8", "--target", "openvino",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert not (tmp_path / "x" / "report.json").exists()


def test_recipe_step_quantizes_for_the_recipe_target(tmp_path: Path) -> None:
    from slimkit.core.technique import StepState
    from slimkit.pipeline import Recipe, apply_steps

    task = make_tiny_task("mlp")
    step = config_from_dict({"type": "quantize", "data": {"scheme": "int8-static", "samples": 8}})
    state = apply_steps(StepState(task, task.build_model(), "onnxruntime", tmp_path, 1),
                       Recipe((step,), "onnxruntime"))
    assert state.deployed.target == "onnxruntime" and state.info["quantize"]["scheme"] == "int8-static"


def _spiky(items: int = 8, tokens: int = 128, channels: int = 48, seed: int = 0) -> list:
    """Like a BERT FFN-output input: smooth, but one token per item (under 1%) is 40x larger in half the channels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    acts = [rng.normal(size=(1, tokens, channels)).astype("float32") for _ in range(items)]
    for a in acts:
        a[0, int(rng.integers(tokens)), : channels // 2] *= 40.0
    return acts


def test_outlier_score_flags_token_spikes_only() -> None:
    import numpy as np

    from slimkit.techniques.quantize._outliers import THRESHOLD, ChannelTails, flag_outlier_layers, outlier_score

    rng = np.random.default_rng(1)
    smooth = [rng.normal(size=(1, 128, 48)) for _ in range(8)]
    heavy = [rng.laplace(size=(1, 128, 48)) for _ in range(8)]
    # Channel outliers (large for every token, as after a LayerNorm) are SmoothQuant's job, not flagged.
    channel = [a * np.where(np.arange(48) < 4, 50.0, 1.0) for a in smooth]
    scores = {"smooth": outlier_score(smooth), "heavy": outlier_score(heavy), "channel": outlier_score(channel),
              "spiky": outlier_score(_spiky())}
    assert max(scores["smooth"], scores["heavy"], scores["channel"]) < THRESHOLD < scores["spiky"]
    assert flag_outlier_layers(scores) == ["spiky"]
    # Streaming keeps only the top 1% per channel yet gives the exact quantile of all tokens.
    acts = _spiky(items=5, tokens=40)  # 200 tokens: the tail is the 3rd largest, 2 tokens above it
    tails = ChannelTails(200)
    for a in acts:
        tails.add(a)
    every = np.abs(np.concatenate([a.reshape(-1, 48) for a in acts]))
    ordered = np.sort(every, axis=0)[::-1]
    exact = np.quantile(ordered[0] / ordered[2], 0.9)
    assert tails.top is not None and tails.top.shape == (3, 48)
    assert tails.score() == pytest.approx(exact, rel=1e-6)


class _SpikyTokens(torch.nn.Module):
    """Tokens through two projections; the second's input spikes on token 0 (of 128) in half its channels."""

    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(8, 32)
        self.down = torch.nn.Linear(32, 8)
        self.head = torch.nn.Linear(8, 3)
        self.register_buffer("spike", torch.ones(1, 128, 32))
        self.spike[0, 0, :16] = 40.0

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(self.up(tokens) * self.spike).mean(1))


@pytest.mark.parametrize("on", [True, False])
def test_outlier_layers_get_int8_weights_and_float_activations_on_openvino(on: bool, tmp_path: Path) -> None:
    import openvino as ov
    from tests.conftest import _task

    torch.manual_seed(0)
    task = _task("tiny-spiky", _SpikyTokens(), {"tokens": torch.randn(16, 128, 8)})
    r = quantize_for_target(task.build_model(), task, QuantizeConfig("int8-static", "openvino", samples=8,
                                                                     outlier_weight_only=on), tmp_path, threads=1)
    layers = r.details["layers"]
    assert torch.isfinite(r.deployed.run(task.example_inputs)).all()
    if not on:
        assert "outliers" not in r.details and not layers["weight_only_int8"] and len(layers["int8"]) == 3
        return
    (down,) = r.details["outliers"]["weight_only_int8"]
    assert "down" in down and layers["weight_only_int8"] == [down] and down not in layers["int8"]
    assert len(layers["int8"]) == 2 and r.details["outliers"]["scores"][down] > r.details["outliers"]["threshold"]
    ir = ov.Core().read_model(str(r.deployed.artifact))
    # The IR asks OpenVINO to quantize those inputs per token at run time, in groups of 64 channels.
    assert ir.get_rt_info(["runtime_options", "DYNAMIC_QUANTIZATION_GROUP_SIZE"]).astype(str) == "64"
    matmul = {op.get_friendly_name(): op for op in ir.get_ops()}[down]
    # Its activation is not fake-quantized; its weight is an int8 constant with a float scale.
    assert matmul.input_value(0).get_node().get_type_name() != "FakeQuantize"
    node = matmul.input_value(1).get_node()
    while node.get_type_name() != "Constant":
        node = node.input_value(0).get_node()
    assert node.get_element_type() == ov.Type.i8


def test_outlier_option_round_trips_and_is_checked() -> None:
    for value in (None, True, False):
        cfg = QuantizeConfig("int8-static", "openvino", outlier_weight_only=value)
        assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    old = {"type": "quantize", "version": 1, "data": {"scheme": "int8-static"}}  # written before the field
    assert config_from_dict(old).outlier_weight_only is None
    with pytest.raises(UsageError, match="int8-static on openvino"):
        QuantizeConfig("int8-static", "onnxruntime", outlier_weight_only=True)
    with pytest.raises(UsageError, match="int8-static on openvino"):
        QuantizeConfig("int8-dynamic", "openvino", outlier_weight_only=True)


def test_qat_smoothing_moves_input_range_into_weights_without_changing_the_function() -> None:
    from slimkit.techniques.quantize._qat import FakeQuant, insert_fake_quant, smooth_inputs

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    x = torch.randn(32, 8)
    x[:, 3] *= 40  # an outlier channel, as a LayerNorm output carries in a transformer
    before = net(x)
    insert_fake_quant(net)
    assert smooth_inputs(net, [{"input": x}], alpha=0.85) == 2
    first = net[0]
    assert isinstance(first, FakeQuant) and first.smooth is not None
    assert int(first.smooth.argmax()) == 3  # the outlier channel is divided the most
    assert float(first.lo) == float("inf")  # what the smoothing pass observed is forgotten
    assert torch.allclose(net(x), before, atol=1e-4)  # still observing: float, same function


def test_qat_on_a_transfer_set_trains_on_it_with_dropout_off(tmp_path: Path) -> None:
    from slimkit.core.data import Batches
    from slimkit.techniques.quantize._qat import qat_model

    task = make_tiny_task("mlp")
    model = task.build_model()
    inputs = {"features": torch.randn(24, 6)}
    with torch.no_grad():
        logits = model(**inputs)
    seen: list[int] = []

    class Counting(Batches):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for batch in super().__iter__():
                seen.append(batch[0]["features"].shape[0])
                yield batch

    task.transfer_data = Counting(inputs, logits, batch_size=8)
    dropout = torch.nn.Dropout(0.5)
    model.extra = dropout  # a dropout module anywhere in the model: off while training, restored after
    lines: list[str] = []
    q, info = qat_model(model, task, [{"features": inputs["features"][:8]}], epochs=1, lr=1e-3,
                        progress=lines.append)
    assert info["data"].startswith("transfer set")
    assert len(lines) == 1 and "QAT epoch 1/1: loss" in lines[0]
    assert sum(seen) == 24  # one epoch over the transfer set, not the 20-item training set
    assert q.extra.p == 0.5


@pytest.mark.parametrize("saturates", [False, True])
def test_qat_ir_stores_int8_weights_on_either_weight_grid(saturates: bool, tmp_path: Path, monkeypatch) -> None:
    """Full-range or 7-bit (CPUs without VNNI), every Linear's weight lands in the IR as an int8 constant,
    not as fp32 behind a clip op."""
    import openvino as ov

    from slimkit.measure import env

    monkeypatch.setattr(env, "int8_dot_saturates", lambda flags=None: saturates)
    task = make_tiny_task("bert")  # Hugging Face layers call their Linears: every one is wrapped
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "openvino", qat_epochs=1, qat_lr=1e-3),
                            tmp_path, threads=1)
    assert r.details["qat"]["weight_max"] == (64 if saturates else 127)
    if saturates:  # the 7-bit grid is exact on every CPU; full range is not where the CPU saturates
        assert r.details["qat"]["export_parity_vs_fake_quant"]["cosine"] > 0.99
    weights = []
    for op in ov.Core().read_model(str(r.deployed.artifact)).get_ops():
        if op.get_type_name() != "MatMul":
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() in ("Convert", "Multiply", "Subtract", "Reshape", "Transpose", "FakeQuantize"):
            node = node.input_value(0).get_node()
        if node.get_type_name() == "Constant":
            weights.append(node.get_element_type())
    assert weights and all(t == ov.Type.i8 for t in weights)


def test_qat_on_onnxruntime_matches_its_fake_quantized_model_with_torch_attention(tmp_path: Path) -> None:
    """torch's MultiheadAttention/TransformerEncoderLayer read their weights directly, so QAT leaves them
    unwrapped; ONNX Runtime quantizes them post-training, on the grid this CPU runs without overflow."""
    task = make_tiny_task("transformer")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", qat_epochs=1,
                                                              qat_lr=1e-3), tmp_path, threads=1)
    info = r.details["qat"]
    # in_proj, out_proj, linear1, linear2 of the one encoder layer; the head is trained
    assert len(info["post_training_layers"]) == 4 and info["float_layers"] == []
    assert info["trained_input_ranges"] == 1
    assert info["runtime_quantizer"]["weight_bits"] == (7 if info["weight_max"] < 127 else 8)
    assert info["export_parity_vs_fake_quant"]["cosine"] > 0.999  # 0.75 before, on an AVX2 host


def test_qat_on_onnxruntime_deploys_the_fake_quantized_hugging_face_model_exactly(tmp_path: Path) -> None:
    task = make_tiny_task("bert")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", qat_epochs=1,
                                                              qat_lr=1e-3), tmp_path, threads=1)
    info = r.details["qat"]
    assert info["post_training_layers"] == [] and info["trained_input_ranges"] == 9  # q/k/v share one
    parity = info["export_parity_vs_fake_quant"]
    assert parity["max_abs_diff"] < 1e-3 * parity["reference_scale"]  # 0.0063 / 0.19 before


def test_qat_on_onnxruntime_keeps_trained_input_ranges_and_excluded_layers(tmp_path: Path) -> None:
    """The ONNX file quantizes each trained layer's input with QAT's own scale and zero point (not
    re-calibrated), and a module the user excluded stays float."""
    import onnx
    from onnx import numpy_helper

    from slimkit.techniques.quantize._calib import calibration_items
    from slimkit.techniques.quantize._qat import qat_model
    from slimkit.techniques.quantize._qat_onnxruntime import deploy_qat_onnxruntime, match_layers

    task = make_tiny_task("mlp")
    items = calibration_items(task.calibration_data, 16)
    cfg = _config("int8-static", "onnxruntime", qat_epochs=1, exclude=("net.2",))
    qmodel, info = qat_model(task.build_model(), task, items, epochs=1, lr=1e-3, exclude=cfg.exclude)
    scale, zero = qmodel.net[0].frozen[:2]
    deployed = deploy_qat_onnxruntime(qmodel, task, cfg, tmp_path, 1, items, False, info, lambda _m: None)
    assert len(info["float_layers"]) == 1 and info["post_training_layers"] == []
    graph = onnx.load(str(deployed.artifact)).graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    snapped = qmodel.net[0].weight.detach().numpy()  # unwrapped in place, on its int8 grid
    [(_, tensor, _)] = match_layers(tmp_path / "float.pre.onnx", [snapped])
    q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == tensor)
    assert float(consts[q.input[1]]) == pytest.approx(scale, rel=1e-6) and int(consts[q.input[2]]) == zero
    excluded = next(n for n in graph.node if n.name == info["float_layers"][0])
    assert any(consts.get(i) is not None and consts[i].dtype == "float32" and consts[i].ndim == 2
               for i in excluded.input)  # its weight is read as a float constant, not through DequantizeLinear


@pytest.mark.parametrize("smooth", [None, False])
def test_qat_on_a_transformer_smooths_inputs_on_openvino(smooth: bool | None, tmp_path: Path) -> None:
    task = make_tiny_task("transformer")
    r = quantize_for_target(task.build_model(), task,
                            _config("int8-static", "openvino", qat_epochs=1, qat_lr=1e-3, smooth_quant=smooth),
                            tmp_path, threads=1)
    info = r.details["qat"]
    assert (info["smoothed_layers"] > 0) is (smooth is None)  # None: on for transformers
    assert info["export_parity_vs_fake_quant"]["cosine"] > 0.95
    import openvino as ov

    ops = {op.get_type_name() for op in ov.Core().read_model(str(r.deployed.artifact)).get_ops()}
    assert "FakeQuantize" in ops


def test_qat_smoothing_shares_one_divisor_among_layers_reading_one_tensor() -> None:
    from slimkit.techniques.quantize._qat import insert_fake_quant, smooth_inputs

    class QKV(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v, self.out = (torch.nn.Linear(6, 6) for _ in range(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.q(x) * self.k(x) + self.v(x))

    torch.manual_seed(0)
    net = QKV().eval()
    x = torch.randn(16, 6)
    x[:, 2] *= 25
    before = net(x)
    insert_fake_quant(net)
    assert smooth_inputs(net, [{"x": x}, {"x": x * 0.5}]) == 4
    assert torch.equal(net.q.smooth, net.k.smooth) and torch.equal(net.q.smooth, net.v.smooth)
    assert not torch.equal(net.q.smooth, net.out.smooth)
    assert torch.allclose(net(x), before, atol=1e-4)


def test_qat_on_openvino_runs_attention_scores_in_int8(tmp_path: Path) -> None:
    """Hugging Face attention: query and key outputs get fake-quantized too (NNCF's transformer
    scheme), so the exported graph has a FakeQuantize on each before the scores' matmul."""
    import openvino as ov

    task = make_tiny_task("bert")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "openvino", qat_epochs=1, qat_lr=1e-3),
                            tmp_path, threads=1)
    info = r.details["qat"]
    assert info["int8_attention_inputs"] == 4  # query + key of each of the 2 layers
    assert info["export_parity_vs_fake_quant"]["cosine"] > 0.99
    after_bias = [op for op in ov.Core().read_model(str(r.deployed.artifact)).get_ops()
                  if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() == "Add"]
    assert len(after_bias) == 4
    # The embedding tables, read by Gather rather than a fake-quantized layer, are stored int8 too.
    assert any("word_embeddings" in name for name in info["int8_embedding_tables"])
    from slimkit.techniques.quantize._openvino import int8_embedding_tables

    assert int8_embedding_tables(r.deployed.artifact) == []  # nothing float left to compress


def test_qat_output_quantizer_observes_then_rounds_to_its_grid() -> None:
    from slimkit.techniques.quantize._qat import FakeQuant

    fq = FakeQuant(torch.nn.Linear(4, 4))
    fq.quantize_output()
    x = torch.randn(16, 4)
    observed = fq(x)  # observing: the float output, its range recorded
    assert torch.equal(observed, fq.layer(x)) and float(fq.out_hi) > float(fq.out_lo)
    fq.observing = False
    fq.freeze()
    y = fq(x)
    levels = y / fq.output_frozen
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # every output sits on the int8 grid, zero at 0
    assert (levels >= -128 - 1e-3).all() and (levels <= 127 + 1e-3).all()


def test_calibration_items_do_not_depend_on_how_often_the_training_set_was_read() -> None:
    """A shuffled set advances its epoch each pass: read directly, the top-up items (and so the int8
    model) differed between a fresh `slimkit quantize` and a search's later trials."""
    from slimkit.core.data import Batches
    from slimkit.techniques.quantize._calib import calibration_items

    data = Batches({"x": torch.arange(40.0).reshape(40, 1)}, torch.zeros(40), 4, shuffle=True, seed=1)
    first = calibration_items(data, 12)
    for _ in range(3):
        list(data)  # what training and earlier trials do to the task's set
    again = calibration_items(data, 12)
    assert [i["x"].item() for i in again] == [i["x"].item() for i in first]
    assert calibration_items(data, 12)[0]["x"].item() == first[0]["x"].item()
