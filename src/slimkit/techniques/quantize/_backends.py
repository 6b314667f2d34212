"""One small object per runtime: list the quantizable layers, build a quantized artifact, load it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.data import Inputs
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._config import QuantizeConfig


class Backend:
    """Quantizes one float artifact again and again (sensitivity, float fallback) under ``workdir``."""

    def __init__(self, cfg: QuantizeConfig, float_artifact: Path, workdir: Path, threads: int,
                 example_inputs: Inputs, calibration: Sequence[Inputs], transformer: bool) -> None:
        self.cfg, self.float_artifact, self.workdir, self.threads = cfg, float_artifact, workdir, threads
        self.example_inputs, self.calibration, self.transformer = example_inputs, calibration, transformer
        self.details: dict[str, Any] = {}

    def layers(self) -> list[tuple[str, str]]:
        """(name the engine knows the layer by, the torch module or weight it came from)."""
        raise NotImplementedError

    def build(self, exclude: Sequence[str], name: str, *, pick_precision: bool = False) -> Deployed:
        raise NotImplementedError

    def load_float(self) -> Deployed:
        raise NotImplementedError


class OpenVinoBackend(Backend):
    _outlier_scores: dict[str, float] | None = None  # scored on the first build, reused by later ones

    def layers(self) -> list[tuple[str, str]]:
        from slimkit.techniques.quantize._openvino import openvino_layers

        return openvino_layers(self.float_artifact, weighted_only=self.cfg.scheme.endswith("weight-only"))

    def build(self, exclude: Sequence[str], name: str, *, pick_precision: bool = False) -> Deployed:
        from slimkit.targets.openvino import load_ir
        from slimkit.techniques.quantize._openvino import quantize_ir

        xml = self.workdir / f"{name}.xml"
        self.details = quantize_ir(self.float_artifact, xml, self.cfg, self.calibration,
                                   transformer=self.transformer, exclude=exclude, outlier_scores=self._outlier_scores)
        self._outlier_scores = self.details.get("outliers", {}).get("scores", self._outlier_scores)
        if self.cfg.scheme == "bf16":
            return load_ir(xml, self.threads, None, ("bf16",))
        # The final artifact measures its fastest precision like any IR; trial builds just run f32.
        return load_ir(xml, self.threads, self.example_inputs if pick_precision else None,
                       None if pick_precision else ("f32",))

    def load_float(self) -> Deployed:
        from slimkit.targets.openvino import load_ir

        return load_ir(self.float_artifact, self.threads, None, ("f32",))


class OrtBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from slimkit.techniques.quantize._onnxruntime import preprocess

        self.pre = preprocess(self.float_artifact, self.workdir / "float.pre.onnx")

    def layers(self) -> list[tuple[str, str]]:
        from slimkit.techniques.quantize._onnxruntime import onnx_layers

        # A transformer's activation matmuls are never quantized (see quantize_onnx): nothing to rank.
        return onnx_layers(self.pre, weighted_only=self.transformer)

    def build(self, exclude: Sequence[str], name: str, *, pick_precision: bool = False) -> Deployed:
        from slimkit.targets.onnxruntime import load_onnx
        from slimkit.techniques.quantize._onnxruntime import quantize_onnx

        path = self.workdir / f"{name}.onnx"
        self.details = quantize_onnx(self.pre, path, self.cfg, self.calibration, exclude=exclude,
                                     transformer=self.transformer)
        return load_onnx(path, self.threads)

    def load_float(self) -> Deployed:
        from slimkit.targets.onnxruntime import load_onnx

        return load_onnx(self.float_artifact, self.threads)


def export_float(model: nn.Module, example_inputs: Inputs, target: str, workdir: Path) -> Path:
    """The float artifact a backend quantizes, when the caller has not deployed one already."""
    if target == "openvino":
        from slimkit.export.openvino import torch_to_openvino

        path = workdir / "float.xml"
        torch_to_openvino(model, example_inputs, path)
    else:
        from slimkit.export.onnx import export_onnx

        path = workdir / "float.onnx"
        export_onnx(model, example_inputs, path)
    return path


BACKENDS: dict[str, type[Backend]] = {"openvino": OpenVinoBackend, "onnxruntime": OrtBackend}
