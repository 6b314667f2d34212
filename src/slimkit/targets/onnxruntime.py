"""Target ``onnxruntime``: ONNX Runtime's CPU execution provider with full graph optimization."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._optional import available, require
from slimkit.core.data import Inputs
from slimkit.export.onnx import export_onnx
from slimkit.targets.base import Availability, Deployed, Target


@dataclass
class OrtDeployed(Deployed):
    session: Any = None

    def _run(self, inputs: Inputs) -> torch.Tensor:
        feed = {n: inputs[n].numpy() for n in self.input_shapes}
        return torch.from_numpy(self.session.run(None, feed)[0]).float()


def load_onnx(path: Path, threads: int, name: str = "onnxruntime") -> OrtDeployed:
    """Load an ONNX file (float or quantized) into an ONNX Runtime session."""
    ort = require("onnxruntime", "the onnxruntime target")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    shapes = {
        i.name: [d if isinstance(d, int) else None for d in i.shape] for i in session.get_inputs()
    }
    return OrtDeployed(name, Path(path), shapes, {"threads": threads, "provider": "CPUExecutionProvider"},
                       session=session)


class OnnxRuntime(Target):
    name = "onnxruntime"
    description = "ONNX Runtime, CPU execution provider, all graph optimizations"

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
        deployed = load_onnx(path, threads, self.name)
        deployed.details["export_parity"] = parity.to_dict() if parity else None
        return deployed
