"""Target ``openvino``: OpenVINO on CPU, with the inference precision chosen by measurement.

OpenVINO's default precision hint on CPUs with AMX/AVX-512 BF16 is bf16, which measured
*slower* than f32 on the 2-core Xeon this project is developed on; so the target times
each precision the CPU offers on the real model and keeps the fastest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from slimkit._optional import available, require
from slimkit.core.data import Inputs
from slimkit.errors import ExportError, UsageError
from slimkit.export.onnx import export_onnx
from slimkit.export.openvino import onnx_to_openvino, torch_to_openvino
from slimkit.measure.latency import time_callable
from slimkit.targets.base import Availability, Deployed, Target
from slimkit.targets.manifest import describe_if_new

PRECISIONS = ("f32", "bf16", "f16")  # OpenVINO's names for the CPU's inference precisions


@dataclass
class OvDeployed(Deployed):
    runtime: ClassVar[str | None] = "openvino"

    compiled: Any = None

    def _run(self, inputs: Inputs) -> torch.Tensor:
        feed = {n: inputs[n].numpy() for n in self.input_shapes}
        result = self.compiled(feed)
        return torch.from_numpy(result[self.compiled.outputs[0]].copy()).float()

    def precision(self) -> str:
        """The inference precision the IR was compiled for (chosen by measurement, or asked)."""
        return str(self.details.get("inference_precision", "f32"))


def _dtype(port: Any) -> str:
    try:
        return str(port.get_element_type().to_dtype().name)
    except Exception:  # noqa: BLE001 - types numpy lacks (bf16) keep OpenVINO's own name
        return str(port.get_element_type().get_type_name())


def _compile(core: Any, model: Any, precision: str, threads: int) -> Any:
    return core.compile_model(model, "CPU", {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    })


def _close(out: Any, reference: Any) -> bool:
    """Whether a half-precision output keeps the f32 one: cosine >= 0.99 over the batch (two zero
    outputs agree; a zero output where f32's is not does not)."""
    a = torch.from_numpy(out.astype("float64")).flatten()
    b = torch.from_numpy(reference.astype("float64")).flatten()
    if not bool(torch.isfinite(a).all()):
        return False
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return na == nb
    return float(a @ b) / (na * nb) >= 0.99


def _ov_reason(err: Exception) -> str:
    """OpenVINO's message in one line: its last non-empty line (the first names only the C++ source)."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


def cpu_precisions(core: Any) -> tuple[str, ...]:
    """The inference precisions this CPU runs natively, as OpenVINO reports them (f32 always; bf16 with
    AVX-512 BF16/AMX, f16 with AVX-512 FP16/AMX-FP16). Tests replace it to take every host's path."""
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return tuple(p for p, cap in (("f32", "FP32"), ("bf16", "BF16"), ("f16", "FP16")) if cap in caps)


def _time_ms(compiled: Any, feed: dict[str, Any], runs: int = 30) -> float:
    lat = time_callable(lambda: compiled(feed), warmup=5, min_runs=runs, max_runs=runs, min_seconds=0.0)
    return lat.median


def load_ir(xml: Path, threads: int, example_inputs: Inputs | None = None,
            precisions: tuple[str, ...] | None = None, name: str = "openvino", *,
            describe: bool = True) -> OvDeployed:
    """Load an IR (float or NNCF-quantized), picking the fastest inference precision measured.

    With ``describe``, a ``model.xml`` that no ``manifest.json`` describes yet gets one, recording
    the precision chosen (the way a quantizer's artifact is described); loading back passes False.
    """
    ov = require("openvino", "the openvino target")
    core = ov.Core()
    model = core.read_model(str(xml))
    supported = cpu_precisions(core)
    # A precision the CPU lacks compiles but runs as f32: never record it as the one used.
    options = tuple(p for p in (precisions or supported) if p in supported) or ("f32",)
    shapes, dtypes = {}, {}
    for port in model.inputs:
        ps = port.get_partial_shape()
        shapes[port.get_any_name()] = [d.get_length() if d.is_static else None for d in ps]
        dtypes[port.get_any_name()] = _dtype(port)
    timings: dict[str, float | None] = {}
    failed: dict[str, str] = {}
    reference: Any = None
    best, best_ms = None, float("inf")
    for i, precision in enumerate(options):
        try:
            compiled = _compile(core, model, precision, threads)
        except RuntimeError as err:
            # The CPU plugin can refuse a precision for a graph (an int8 model with float layers
            # compiled in f16 mixed f16 and f32 inputs of one MatMul): try the next one instead.
            if i == len(options) - 1 and best is None:
                raise
            failed[precision] = _ov_reason(err)
            continue
        if example_inputs is None or len(options) == 1:
            best = compiled
            timings[precision] = None  # the only option: not timed
            break
        feed = {n: example_inputs[n].numpy() for n in shapes}
        try:
            out = compiled(feed)[compiled.outputs[0]]
        except RuntimeError as err:
            # A precision can compile and still fail to run a graph (MaxViT in a half precision
            # here): the next one is tried; the last one left says why.
            if i == len(options) - 1 and best is None:
                raise
            failed[precision] = _ov_reason(err)
            continue
        if precision == "f32":
            reference = out
        elif reference is not None and not _close(out, reference):
            # Half precision can lose the model: activations under f16's range become zeros (random or
            # badly scaled weights). Speed never buys that; the precision is skipped and said.
            failed[precision] = "output differs from f32 on the example inputs (cosine < 0.99)"
            continue
        ms = _time_ms(compiled, feed)
        timings[precision] = round(ms, 4)
        if ms < best_ms:
            best, best_ms = compiled, ms
    chosen = min(timings, key=lambda p: timings[p] or 0.0)
    details: dict[str, Any] = {"threads": threads, "inference_precision": chosen, "precision_timings_ms": timings}
    if failed:
        details["precision_failed"] = failed
    deployed = OvDeployed(name, Path(xml), shapes, details, input_dtypes=dtypes, compiled=best)
    if describe:
        describe_if_new(deployed)
    return deployed


class OpenVino(Target):
    name = "openvino"
    description = "OpenVINO CPU plugin; inference precision chosen by measurement"
    formats = (".xml", ".onnx")  # OpenVINO reads ONNX files directly too

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
        # deploy() writes the manifest, with the precision chosen here.
        deployed = load_ir(xml, threads, example_inputs, self.precisions, self.name, describe=False)
        deployed.details.update({"export_route": route, "export_parity": parity.to_dict() if parity else None})
        return deployed

    def _load(self, path: Path, manifest: dict[str, Any], threads: int, precision: str | None) -> Deployed:
        """In ``precision``, else the manifest's (an ONNX Runtime artifact's "fp32" or "int8": f32).

        A precision this CPU lacks runs as f32, and ``details["inference_precision"]`` says so.
        """
        if precision is not None and precision not in PRECISIONS:
            raise UsageError(f"unknown OpenVINO inference precision '{precision}'",
                             hint=f"choose one of {', '.join(PRECISIONS)}, or leave it unset for the manifest's")
        recorded = manifest.get("precision")
        chosen = precision or (recorded if recorded in PRECISIONS else "f32")
        return load_ir(path, threads, None, (chosen,), self.name, describe=False)
