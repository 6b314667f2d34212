"""Target ``openvino``: OpenVINO on CPU, with the inference precision chosen by measurement.

OpenVINO's default precision hint on CPUs with AMX/AVX-512 BF16 is bf16, which measured
*slower* than f32 on the 2-core Xeon this project is developed on; so the target times
each precision the CPU offers on the real model and keeps the fastest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._optional import available, require
from slimkit.core.data import Inputs
from slimkit.errors import ExportError
from slimkit.export.onnx import export_onnx
from slimkit.export.openvino import onnx_to_openvino, torch_to_openvino
from slimkit.measure.latency import time_callable
from slimkit.targets.base import Availability, Deployed, Target


@dataclass
class OvDeployed(Deployed):
    compiled: Any = None

    def _run(self, inputs: Inputs) -> torch.Tensor:
        feed = {n: inputs[n].numpy() for n in self.input_shapes}
        result = self.compiled(feed)
        return torch.from_numpy(result[self.compiled.outputs[0]].copy()).float()


def _compile(core: Any, model: Any, precision: str, threads: int) -> Any:
    return core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    })


def _time_ms(compiled: Any, feed: dict[str, Any], runs: int = 30) -> float:
    lat = time_callable(lambda: compiled(feed), warmup=5, min_runs=runs, max_runs=runs, min_seconds=0.0)
    return lat.median


def load_ir(xml: Path, threads: int, example_inputs: Inputs | None = None,
            precisions: tuple[str, ...] | None = None, name: str = "openvino") -> OvDeployed:
    """Load an IR (float or NNCF-quantized), picking the fastest inference precision measured."""
    ov = require("openvino", "the openvino target")
    core = ov.Core()
    model = core.read_model(str(xml))
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    supported = tuple(p for p, cap in (("f32", "FP32"), ("bf16", "BF16"), ("f16", "FP16")) if cap in caps)
    # A precision the CPU lacks compiles but runs as f32: never record it as the one used.
    options = tuple(p for p in (precisions or supported) if p in supported) or ("f32",)
    shapes = {}
    for port in model.inputs:
        ps = port.get_partial_shape()
        shapes[port.get_any_name()] = [d.get_length() if d.is_static else None for d in ps]
    timings: dict[str, float | None] = {}
    best, best_ms = None, float("inf")
    for precision in options:
        compiled = _compile(core, model, precision, threads)
        if example_inputs is None or len(options) == 1:
            best = compiled
            timings[precision] = None  # the only option: not timed
            break
        ms = _time_ms(compiled, {n: example_inputs[n].numpy() for n in shapes})
        timings[precision] = round(ms, 4)
        if ms < best_ms:
            best, best_ms = compiled, ms
    chosen = min(timings, key=lambda p: timings[p] or 0.0)
    details = {"threads": threads, "inference_precision": chosen, "precision_timings_ms": timings}
    return OvDeployed(name, Path(xml), shapes, details, compiled=best)


class OpenVino(Target):
    name = "openvino"
    description = "OpenVINO CPU plugin; inference precision chosen by measurement"

    def __init__(self, precisions: tuple[str, ...] | None = None) -> None:
        self.precisions = precisions

    def availability(self) -> Availability:
        return Availability(*available("openvino"))

    def deploy(self, model: nn.Module, example_inputs: Inputs, workdir: Path, threads: int) -> Deployed:
        self.ensure_available()
        xml = Path(workdir) / "model.xml"
        try:
            parity = torch_to_openvino(model, example_inputs, xml)
            route = "torch->openvino"
        except ExportError:
            # Some models trace for ONNX but not for OpenVINO's TorchScript frontend.
            onnx_path = Path(workdir) / "model.onnx"
            export_onnx(model, example_inputs, onnx_path, check=False)
            parity = onnx_to_openvino(onnx_path, xml, model, example_inputs)
            route = "torch->onnx->openvino"
        deployed = load_ir(xml, threads, example_inputs, self.precisions, self.name)
        deployed.details.update({"export_route": route, "export_parity": parity.to_dict() if parity else None})
        return deployed
