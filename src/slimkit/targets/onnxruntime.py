"""Target ``onnxruntime``: ONNX Runtime's CPU execution provider with full graph optimization."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from slimkit._optional import available, require
from slimkit.core.data import Inputs
from slimkit.errors import UsageError
from slimkit.export.onnx import export_onnx
from slimkit.targets.base import Availability, Deployed, Target
from slimkit.targets.manifest import describe_if_new

# ONNX element types as the manifest names dtypes (numpy's names, like torch's).
_DTYPES = {"float": "float32", "double": "float64", "float16": "float16", "bfloat16": "bfloat16",
           "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool"}
# Operators only a quantized graph holds (QDQ, QOperator and dynamic-quantization formats).
_INT8_OPS = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
             "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}


@dataclass
class OrtDeployed(Deployed):
    runtime: ClassVar[str | None] = "onnxruntime"

    session: Any = None

    def _run(self, inputs: Inputs) -> torch.Tensor:
        feed = {n: inputs[n].numpy() for n in self.input_shapes}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()

    def precision(self) -> str:
        """"int8" for a quantized graph, else "fp32": ONNX Runtime runs what the graph holds."""
        onnx = require("onnx")
        graph = onnx.load(str(self.artifact), load_external_data=False).graph
        return "int8" if any(node.op_type in _INT8_OPS for node in graph.node) else "fp32"


def load_onnx(path: Path, threads: int, name: str = "onnxruntime", *, describe: bool = True) -> OrtDeployed:
    """Load an ONNX file (float or quantized) into an ONNX Runtime session.

    With ``describe``, a ``model.onnx`` that no ``manifest.json`` describes yet gets one (the
    way a quantizer's artifact is described); loading an artifact back passes False.
    """
    ort = require("onnxruntime", "the onnxruntime target")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    shapes = {
        i.name: [d if isinstance(d, int) else None for d in i.shape] for i in session.get_inputs()
    }
    dtypes = {i.name: _DTYPES.get(i.type.removeprefix("tensor(").rstrip(")"), i.type) for i in session.get_inputs()}
    deployed = OrtDeployed(name, Path(path), shapes, {"threads": threads, "provider": "CPUExecutionProvider"},
                           input_dtypes=dtypes, session=session)
    if describe:
        describe_if_new(deployed)
    return deployed


class OnnxRuntime(Target):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider, all graph optimizations"
    formats = (".onnx",)

    def availability(self) -> Availability:
        ok, why = available("onnxruntime")
        if ok:
            ok2, why2 = available("onnx")
            if not ok2:
                return Availability(False, why2)
        return Availability(ok, why)

    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        self.ensure_available()
        path = Path(workdir) / "model.onnx"
        parity = export_onnx(model, example_inputs, path)
        deployed = load_onnx(path, threads, self.name, describe=False)  # deploy() writes the manifest
        deployed.details["export_parity"] = parity.to_dict() if parity else None
        return deployed

    def _load(self, path: Path, manifest: dict[str, Any], threads: int, precision: str | None) -> Deployed:
        if precision is not None and precision != manifest.get("precision"):
            raise UsageError(f"ONNX Runtime runs {path.name} in the precision its graph holds "
                             f"({manifest.get('precision')}), not in {precision}",
                             hint="leave precision unset here; it chooses OpenVINO's inference precision")
        return load_onnx(path, threads, self.name, describe=False)
