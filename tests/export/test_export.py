from __future__ import annotations

import pytest
import torch

from slimkit.errors import ExportError, ParityError
from slimkit.export import export_onnx, onnx_to_openvino, torch_to_openvino
from slimkit.export.parity import check_parity
from tests.conftest import make_tiny_task

pytestmark = pytest.mark.onnx


@pytest.mark.parametrize("family", ["cnn", "transformer"])
def test_onnx_then_openvino_keep_parity_and_dynamic_batch(family, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    task = make_tiny_task(family)
    model = task.build_model()
    parity = export_onnx(model, task.example_inputs, tmp_path / "m.onnx")
    assert parity is not None and parity.cosine > 0.9999
    assert onnx_to_openvino(tmp_path / "m.onnx", tmp_path / "a.xml", model, task.example_inputs).cosine > 0.9999
    assert torch_to_openvino(model, task.example_inputs, tmp_path / "b.xml").cosine > 0.9999
    import onnx

    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    assert all(not i.type.tensor_type.shape.dim[0].HasField("dim_value") for i in graph.input)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "a.xml", "b.bin", "b.xml", "m.onnx"]


@pytest.mark.parametrize("family", ["cnn", "transformer"])
def test_torchscript_exporter_takes_named_inputs(family, tmp_path):
    pytest.importorskip("onnxruntime")
    task = make_tiny_task(family)
    parity = export_onnx(task.build_model(), task.example_inputs, tmp_path / "m.onnx", dynamo=False)
    assert parity is not None and parity.cosine > 0.9999


def test_parity_failure_is_a_clear_error():
    with pytest.raises(ParityError, match="max abs diff"):
        check_parity(torch.ones(10), torch.ones(10) * 1.5, "the test model")


class _Unexportable(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Data leaves torch: no exporter can follow this.
        return torch.tensor(x.numpy().tolist()) * 2


def test_export_failure_names_the_problem_and_leaves_nothing(tmp_path):
    with pytest.raises(ExportError) as info:
        export_onnx(_Unexportable(), {"x": torch.ones(1, 2)}, tmp_path / "bad.onnx", dynamo=True)
    assert "ONNX export failed" in str(info.value) and info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_a_silently_wrong_trace_is_caught_by_the_parity_check(tmp_path):
    # The TorchScript tracer bakes the numpy round-trip into a constant: the export "works",
    # and only the parity check on real inputs shows the model is wrong.
    with pytest.raises(ParityError):
        export_onnx(_Unexportable(), {"x": torch.ones(1, 2)}, tmp_path / "bad.onnx", dynamo=False)
    assert list(tmp_path.iterdir()) == []
