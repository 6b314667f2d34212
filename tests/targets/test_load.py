"""Artifact folders: every deployment writes manifest.json, and Target.load / targets.load read it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimkit.core.data import batch_of
from slimkit.errors import SlimkitError, UsageError
from slimkit.targets import (
    MANIFEST,
    ArtifactError,
    NeedsModelError,
    get_target,
    load,
    load_artifact,
    manifest_for,
    read_manifest,
)
from slimkit.targets.base import dynamic_shapes
from tests.conftest import make_tiny_task

_RUNTIMES = {"onnxruntime": pytest.mark.onnx, "openvino": pytest.mark.openvino}


def _loadable() -> list:
    out = []
    for name, mark in _RUNTIMES.items():
        marks = [mark]
        if not get_target(name).availability().ok:
            marks.append(pytest.mark.skip(reason=get_target(name).availability().reason))
        out.append(pytest.param(name, marks=marks))
    return out


def _deploy(target: str, folder: Path, family: str = "mlp"):  # noqa: ANN202
    task = make_tiny_task(family)
    return task, get_target(target).deploy(task.build_model(), task.example_inputs, folder, threads=1)


def _edit(folder: Path, **changes: object) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def _skip_unless(target: str) -> None:
    if not get_target(target).availability().ok:
        pytest.skip(get_target(target).availability().reason)


@pytest.mark.parametrize("family", ["cnn", "mlp", "transformer"])
@pytest.mark.parametrize("target", _loadable())
def test_a_deployed_folder_loads_back_with_the_same_outputs(target, family, tmp_path):
    task, deployed = _deploy(target, tmp_path, family)
    manifest = read_manifest(tmp_path)
    assert manifest["target"] == target and (tmp_path / manifest["artifact"]) == deployed.artifact
    assert manifest["runtime"]["name"] == target and manifest["runtime"]["version"]
    assert manifest["slimkit_version"] and manifest["format_version"] == 1
    assert set(manifest["inputs"]) == set(task.example_inputs)
    for name, spec in manifest["inputs"].items():
        assert spec == {"dtype": str(task.example_inputs[name].dtype).removeprefix("torch."),
                        "shape": dynamic_shapes(task.example_inputs)[name]}  # token inputs: any length too
    loaded = load(tmp_path, threads=1)
    assert loaded.target == target and loaded.artifact == deployed.artifact
    for batch in (1, 3):
        inputs = batch_of(task.example_inputs, batch)
        assert torch.allclose(loaded.run(inputs), deployed.run(inputs), atol=1e-5)


@pytest.mark.parametrize("name", ["torch", "torch-compile", "tensorrt"])
def test_a_torch_artifact_is_described_but_needs_its_model_class(name, tmp_path):
    if name == "torch":
        _deploy(name, tmp_path)
    else:  # compiling (or a GPU) costs too much here: the manifest is the same as torch's
        _deploy("torch", tmp_path)
        _edit(tmp_path, target=name)
    manifest = read_manifest(tmp_path)
    assert manifest["artifact"] == "model.safetensors" and manifest["precision"] == "fp32"
    with pytest.raises(NeedsModelError, match="model's class") as err:
        load(tmp_path, threads=1)
    assert "build_model" in err.value.hint


@pytest.mark.openvino
def test_openvino_precision_round_trips(tmp_path):
    _skip_unless("openvino")
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precision = "bf16" if "BF16" in caps else "f16" if "FP16" in caps else "f32"
    task = make_tiny_task("mlp")
    ov_target = type(get_target("openvino"))(precisions=(precision,))
    deployed = ov_target.deploy(task.build_model(), task.example_inputs, tmp_path, threads=1)
    assert deployed.details["inference_precision"] == precision
    assert read_manifest(tmp_path)["precision"] == precision
    assert load(tmp_path, threads=1).details["inference_precision"] == precision
    assert load(tmp_path, threads=1, precision="f32").details["inference_precision"] == "f32"
    with pytest.raises(UsageError, match="precision 'int3'"):
        load(tmp_path, threads=1, precision="int3")


@pytest.mark.onnx
def test_an_onnx_artifact_runs_on_openvino_but_an_ir_not_on_onnxruntime(tmp_path):
    _skip_unless("onnxruntime")
    _skip_unless("openvino")
    task, deployed = _deploy("onnxruntime", tmp_path / "ort")
    on_ov = load(tmp_path / "ort", threads=1, target="openvino")
    assert on_ov.target == "openvino" and on_ov.details["inference_precision"] == "f32"
    assert torch.allclose(on_ov.run(task.example_inputs), deployed.run(task.example_inputs), atol=1e-4)
    _deploy("openvino", tmp_path / "ov")
    with pytest.raises(ArtifactError, match="cannot run model.xml") as err:
        load(tmp_path / "ov", threads=1, target="onnxruntime")
    assert "openvino" in err.value.hint
    with pytest.raises(UsageError, match="precision"):
        load(tmp_path / "ort", threads=1, precision="bf16")


@pytest.mark.onnx
@pytest.mark.parametrize("target", _loadable())
def test_a_quantized_artifact_gets_a_manifest_and_loads_back(target, tmp_path):
    from slimkit.techniques.quantize import QuantizeConfig, quantize_for_target

    task = make_tiny_task("mlp")
    cfg = QuantizeConfig("int8-static", target, samples=8)
    result = quantize_for_target(task.build_model(), task, cfg, tmp_path, threads=1)
    manifest = read_manifest(tmp_path)
    assert manifest["artifact"] == result.deployed.artifact.name and manifest["target"] == target
    if target == "onnxruntime":
        assert manifest["precision"] == "int8"
    else:
        assert manifest["precision"] == result.deployed.details["inference_precision"]
    loaded = load(tmp_path, threads=1)
    assert torch.allclose(loaded.run(task.example_inputs), result.deployed.run(task.example_inputs), atol=1e-4)


@pytest.mark.onnx
def test_loading_again_keeps_the_deployments_manifest_and_steps_get_none(tmp_path):
    _skip_unless("onnxruntime")
    from slimkit.export.onnx import export_onnx
    from slimkit.targets.onnxruntime import load_onnx

    task, _ = _deploy("onnxruntime", tmp_path)
    before = (tmp_path / MANIFEST).stat().st_mtime_ns
    load_onnx(tmp_path / "model.onnx", 1)  # a quantizer's reload of its float reference
    assert (tmp_path / MANIFEST).stat().st_mtime_ns == before
    steps = tmp_path / "steps"
    export_onnx(task.build_model(), task.example_inputs, steps / "float.onnx", check=False)
    load_onnx(steps / "float.onnx", 1)
    assert not (steps / MANIFEST).exists()


@pytest.mark.onnx
def test_old_run_folders_without_a_manifest_still_load_by_path(tmp_path):
    _skip_unless("onnxruntime")
    task, deployed = _deploy("onnxruntime", tmp_path)
    (tmp_path / MANIFEST).unlink()
    assert manifest_for(deployed.artifact) is None
    old = load_artifact("onnxruntime", deployed.artifact, 1)
    assert old is not None and torch.allclose(old.run(task.example_inputs), deployed.run(task.example_inputs))
    assert not (tmp_path / MANIFEST).exists()  # loading an old folder does not write into it


@pytest.mark.onnx
def test_paired_timing_loads_an_artifact_folder_again(tmp_path):
    _skip_unless("onnxruntime")
    from types import SimpleNamespace

    from slimkit.pipeline.paired import _runner

    task, deployed = _deploy("onnxruntime", tmp_path / "artifacts" / "t0")
    entry = SimpleNamespace(artifact="artifacts/t0/model.onnx", target="onnxruntime",
                            measurement=SimpleNamespace(details={}))
    assert manifest_for(deployed.artifact) is not None
    run = _runner(entry, tmp_path, task, 1)  # type: ignore[arg-type]
    assert run is not None and run() is not None
    gone = SimpleNamespace(artifact=None, target="onnxruntime", measurement=SimpleNamespace(details={}))
    assert _runner(gone, tmp_path, task, 1) is None  # type: ignore[arg-type]  # nothing to load: stays unpaired


def _break_missing_folder(folder: Path) -> Path:
    return folder / "nowhere"


def _break_no_manifest(folder: Path) -> Path:
    (folder / MANIFEST).unlink()
    return folder


def _break_json(folder: Path) -> Path:
    (folder / MANIFEST).write_text("{not json")
    return folder


def _break_fields(folder: Path) -> Path:
    _edit(folder, artifact=["model.onnx"])
    return folder


def _break_escaping_name(folder: Path) -> Path:
    _edit(folder, artifact="../model.onnx")
    return folder


def _break_newer_format(folder: Path) -> Path:
    _edit(folder, format_version=99)
    return folder


def _break_unknown_target(folder: Path) -> Path:
    _edit(folder, target="no-such-runtime")
    return folder


def _break_missing_artifact(folder: Path) -> Path:
    (folder / "model.onnx").unlink()
    return folder


def _break_changed_artifact(folder: Path) -> Path:
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    return folder


def _break_file_given(folder: Path) -> Path:
    return folder / "model.onnx"


BROKEN = {
    _break_missing_folder: "does not exist",
    _break_no_manifest: r"no manifest.json in .* \(it holds model.onnx\): this slimkit did not deploy it",
    _break_json: "unreadable",
    _break_fields: "no valid 'artifact'",
    _break_escaping_name: "not a file of its folder",
    _break_newer_format: "format 99",
    _break_unknown_target: "names target 'no-such-runtime'",
    _break_missing_artifact: "model.onnx, the artifact .* is missing",
    _break_changed_artifact: "changed since it was deployed",
    _break_file_given: "is a file, not an artifact folder",
}


@pytest.mark.onnx
@pytest.mark.parametrize("breaking", list(BROKEN), ids=lambda f: f.__name__.removeprefix("_break_"))
def test_a_folder_that_cannot_load_says_why_and_what_to_do(breaking, tmp_path):
    _skip_unless("onnxruntime")
    _deploy("onnxruntime", tmp_path)
    folder = breaking(tmp_path)
    with pytest.raises(ArtifactError, match=BROKEN[breaking]) as err:
        load(folder, threads=1)
    assert isinstance(err.value, SlimkitError) and err.value.hint


def test_a_plugin_target_gets_a_manifest_without_writing_one(tmp_path):
    from slimkit.targets.base import Availability, Target, dynamic_shapes
    from slimkit.targets.torch_eager import TorchDeployed, save_state

    class Plugin(Target):
        name = "plugin"
        description = "a third-party target"

        def availability(self) -> Availability:
            return Availability(True, "1.0")

        def deploy(self, model, example_inputs, workdir, threads):  # noqa: ANN001, ANN201
            path = save_state(model, Path(workdir) / "model.safetensors")
            return TorchDeployed(self.name, path, dynamic_shapes(example_inputs), model=model)

    task = make_tiny_task("transformer")
    Plugin().deploy(task.build_model(), task.example_inputs, tmp_path, 1)
    manifest = read_manifest(tmp_path)
    assert manifest["target"] == "plugin" and manifest["inputs"]["input_ids"]["dtype"] == "int64"
    with pytest.raises(ArtifactError, match="target 'plugin' cannot run model.safetensors"):
        Plugin().load(tmp_path, 1)


@pytest.mark.openvino
@pytest.mark.parametrize(("host", "caps", "fastest", "chosen"), [
    ("AVX2 only (AMD Zen 3)", ("f32",), None, "f32"),
    ("AVX-512 BF16 (AMD), bf16 fastest", ("f32", "bf16"), "bf16", "bf16"),
    ("AVX-512 BF16 (AMD), f32 fastest", ("f32", "bf16"), "f32", "f32"),
    ("Intel AMX with FP16, f16 fastest", ("f32", "bf16", "f16"), "f16", "f16"),
    ("Intel AMX with FP16, f16 loses the output", ("f32", "bf16", "f16"), "f16-broken", "bf16"),
])
def test_every_hosts_openvino_precision_path_runs_here(tmp_path, monkeypatch, host, caps, fastest, chosen):
    """What OpenVINO offers depends on the CPU; each host's choice is forced here, on any host."""
    _skip_unless("openvino")
    from slimkit.targets import openvino as ovt

    timings = {"f32": 1.0, "bf16": 2.0, "f16": 3.0}
    if fastest == "f16-broken":
        timings.update(f16=0.1, bf16=0.5)  # f16 would win on speed, but its output is not the model's
    elif fastest:
        timings[fastest] = 0.1
    monkeypatch.setattr(ovt, "cpu_precisions", lambda core: caps)
    compiled_for: list[str] = []
    real_compile = ovt._compile

    def compile_(core, model, precision, threads):
        compiled_for.append(precision)
        return real_compile(core, model, precision, threads)

    monkeypatch.setattr(ovt, "_compile", compile_)
    monkeypatch.setattr(ovt, "_time_ms", lambda compiled, feed, runs=30: timings[compiled_for[-1]])
    if fastest == "f16-broken":
        monkeypatch.setattr(ovt, "_close", lambda out, ref: compiled_for[-1] != "f16")
    task = make_tiny_task("mlp")
    deployed = get_target("openvino").deploy(task.build_model(), task.example_inputs, tmp_path, threads=1)
    assert compiled_for == list(caps), host  # only what the CPU offers is tried
    assert deployed.details["inference_precision"] == chosen and read_manifest(tmp_path)["precision"] == chosen
    if fastest == "f16-broken":
        assert "f16" in deployed.details["precision_failed"]
    assert load(tmp_path, threads=1).details["inference_precision"] in (chosen, "f32")


@pytest.mark.openvino
def test_a_precision_that_compiles_but_cannot_run_the_graph_is_passed_over(tmp_path, monkeypatch):
    _skip_unless("openvino")
    from slimkit.targets import openvino as ovt

    class FailsToRun:
        def __init__(self, compiled):
            self.outputs = compiled.outputs

        def __call__(self, feed):
            raise RuntimeError("Exception from src/inference/src/cpp/infer_request.cpp:224:\nbf16 kernel missing\n")

    real_compile = ovt._compile
    monkeypatch.setattr(ovt, "cpu_precisions", lambda core: ("f32", "bf16"))
    monkeypatch.setattr(ovt, "_compile", lambda core, model, precision, threads: (
        FailsToRun if precision == "bf16" else lambda c: c)(real_compile(core, model, precision, threads)))
    task = make_tiny_task("mlp")
    deployed = get_target("openvino").deploy(task.build_model(), task.example_inputs, tmp_path, threads=1)
    assert deployed.details["inference_precision"] == "f32"
    assert deployed.details["precision_failed"] == {"bf16": "bf16 kernel missing"}
