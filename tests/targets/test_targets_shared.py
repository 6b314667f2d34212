"""The shared suite every target passes, on tiny CNN, MLP and transformer models."""

from __future__ import annotations

import pytest
import torch

from slimkit.core.data import batch_of
from slimkit.core.task import run_model
from slimkit.errors import ShapeError, UnavailableError
from slimkit.export.parity import compare
from slimkit.measure.measure import measure_deployed
from slimkit.targets import TARGETS, get_target

_SLOW = {"torch-compile"}  # compiling with Inductor takes tens of seconds per shape on 2 cores


def _params() -> list:
    out = []
    for name, target in TARGETS:
        marks = []
        if name in _SLOW:
            marks.append(pytest.mark.slow)
        if name == "tensorrt":
            marks.append(pytest.mark.gpu)
        if not target.availability().ok:
            marks.append(pytest.mark.skip(reason=target.availability().reason))
        out.append(pytest.param(name, marks=marks))
    return out


@pytest.mark.parametrize("target_name", _params())
class TestTarget:
    def test_runs_and_matches_torch(self, target_name, tiny_task, tmp_path):
        model = tiny_task.build_model()
        deployed = get_target(target_name).deploy(model, tiny_task.example_inputs, tmp_path, threads=1)
        for batch in (1, 5):
            inputs = batch_of(tiny_task.example_inputs, batch)
            got = deployed.run(inputs)
            with torch.no_grad():
                ref = run_model(model, inputs)
            assert got.shape == ref.shape
            assert torch.isfinite(got).all()
            parity = compare(ref, got)
            assert parity.cosine > 0.999, parity
            assert parity.max_abs_diff < 1e-2 * max(1.0, parity.reference_scale)

    def test_artifact_on_disk(self, target_name, tiny_task, tmp_path):
        deployed = get_target(target_name).deploy(tiny_task.build_model(), tiny_task.example_inputs,
                                                  tmp_path, threads=1)
        assert deployed.artifact is not None and deployed.artifact.exists()
        assert deployed.size_bytes() > 0
        assert deployed.details["threads"] == 1

    def test_wrong_shape_names_expected_and_got(self, target_name, tiny_task, tmp_path):
        deployed = get_target(target_name).deploy(tiny_task.build_model(), tiny_task.example_inputs,
                                                  tmp_path, threads=1)
        name, tensor = next(iter(tiny_task.example_inputs.items()))
        bad = dict(tiny_task.example_inputs)
        bad[name] = tensor[..., :-1] if tensor.dim() > 1 else tensor
        with pytest.raises(ShapeError, match="expected"):
            deployed.run(bad)

    def test_measurement_path(self, target_name, tiny_task, tmp_path):
        deployed = get_target(target_name).deploy(tiny_task.build_model(), tiny_task.example_inputs,
                                                  tmp_path, threads=1)
        m = measure_deployed(deployed, tiny_task, quick=True)
        assert 0.0 <= m.metric <= 100.0
        assert m.latency.median > 0 and m.latency.ci95[0] <= m.latency.median <= m.latency.ci95[1]
        assert m.latency.p90 >= m.latency.median
        assert m.throughput > 0 and m.throughput_batch == tiny_task.throughput_batch


def test_metric_is_the_same_on_every_available_target(tmp_path):
    from tests.conftest import make_tiny_task

    task = make_tiny_task("cnn")
    scores = {}
    for name, target in TARGETS:
        if name in _SLOW or not target.availability().ok:
            continue
        deployed = target.deploy(task.build_model(), task.example_inputs, tmp_path / name, threads=1)
        scores[name] = measure_deployed(deployed, task, quick=True).metric
    assert len(set(scores.values())) == 1, scores


def test_unavailable_target_says_why():
    trt = get_target("tensorrt")
    if trt.availability().ok:
        pytest.skip("a GPU with TensorRT is present")
    with pytest.raises(UnavailableError, match="not available"):
        trt.ensure_available()
