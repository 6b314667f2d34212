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
from tests.conftest import FAMILIES, make_tiny_task

from slimkit.core.config import config_from_dict
from slimkit.core.data import batch_of
from slimkit.core.task import run_model
from slimkit.errors import UsageError
from slimkit.export.parity import compare
from slimkit.measure.measure import evaluate_deployed
from slimkit.techniques.quantize import SCHEMES, QuantizeConfig, check, matrix_rows, quantize_for_target, support

MIN_COSINE = {"int8-dynamic": 0.98, "int8-static": 0.95, "int8-weight-only": 0.99, "int4-weight-only": 0.8,
              "fp16": 0.999, "bf16": 0.99}
METRIC_TOL = 15.0  # points: 3 of the 20 items
TARGETS = ("torch", "onnxruntime", "openvino", "torch-compile", "tensorrt")
OFFERED = [(s, t) for s, t, ok, _ in matrix_rows() if ok]
NOT_OFFERED = [(s, t) for s in SCHEMES for t in TARGETS if not support(s, t).ok]


def _config(scheme: str, target: str, **kw: object) -> QuantizeConfig:
    # A small group size so the tiny layers (4..16 wide) are really int4, not the int8 fallback.
    return QuantizeConfig(scheme, target, samples=8, group_size=4, **kw)  # type: ignore[arg-type]


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


@pytest.mark.parametrize("calibration", ["minmax", "percentile", "entropy"])
def test_onnxruntime_calibration_methods(calibration: str, tmp_path: Path) -> None:
    task = make_tiny_task("mlp")
    r = quantize_for_target(task.build_model(), task, _config("int8-static", "onnxruntime", calibration=calibration),
                            tmp_path, threads=1)
    assert r.details["calibration"] == calibration and torch.isfinite(r.deployed.run(task.example_inputs)).all()


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
    from slimkit.techniques.quantize._backends import export_float
    from slimkit.techniques.quantize._openvino import openvino_layers

    task = make_tiny_task("mlp")
    model = task.build_model()
    xml = export_float(model, task.example_inputs, "openvino", tmp_path)
    first = openvino_layers(xml)[0][0]
    r = quantize_for_target(model, task, _config("int8-static", "openvino", exclude=(first,)), tmp_path / "q",
                            threads=1, float_artifact=xml)
    assert r.float_layers == [first]


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


def test_never_slower_guard_uses_the_float_model_on_the_same_target() -> None:
    from slimkit.api._common import finalize
    from slimkit.measure.latency import Latency
    from slimkit.measure.measure import Measurement
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
    recipe = json.loads((out / "recipe.json").read_text())
    assert config_from_dict(recipe["steps"][0]) == QuantizeConfig("int8-dynamic", "onnxruntime")


def test_cli_unsupported_combination_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from slimkit.cli.main import main

    code = main(["quantize", "--task", "digits-cnn", "--scheme", "fp8", "--target", "openvino",
                 "--out", str(tmp_path / "x")])
    assert code == 2
    assert not (tmp_path / "x" / "report.json").exists()


def test_recipe_step_quantizes_for_the_recipe_target(tmp_path: Path) -> None:
    from slimkit.core.recipe import Recipe, RecipeState, run_recipe
    from slimkit.techniques import import_all

    import_all()  # registers the step runners (slimkit.techniques._steps)
    task = make_tiny_task("mlp")
    step = config_from_dict({"type": "quantize", "data": {"scheme": "int8-static", "samples": 8}})
    state = run_recipe(RecipeState(task, task.build_model(), "onnxruntime", tmp_path, 1),
                       Recipe((step,), "onnxruntime"))
    assert state.deployed.target == "onnxruntime" and state.info["quantize"]["scheme"] == "int8-static"
