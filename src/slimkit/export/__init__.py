"""Export torch models to ONNX and OpenVINO IR, each followed by a numerical parity check."""

from slimkit.export.onnx import export_onnx
from slimkit.export.openvino import onnx_to_openvino, torch_to_openvino
from slimkit.export.parity import Parity, check_parity

__all__ = ["Parity", "check_parity", "export_onnx", "onnx_to_openvino", "torch_to_openvino"]
