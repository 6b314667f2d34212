"""One small object per runtime: list the quantizable layers, build a quantized artifact, load it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from slimkit.core.data import Inputs
from slimkit.errors import UsageError
from slimkit.targets.base import Deployed
from slimkit.techniques.quantize._config import QuantizeConfig
from slimkit.techniques.quantize._origins import in_module, module_weights, name_layers


class Backend:
    """Quantizes one float artifact again and again (sensitivity, float fallback) under ``workdir``."""

    def __init__(self, cfg: QuantizeConfig, float_artifact: Path, workdir: Path, threads: int,
                 example_inputs: Inputs, calibration: Sequence[Inputs], transformer: bool) -> None:
        self.cfg, self.float_artifact, self.workdir, self.threads = cfg, float_artifact, workdir, threads
        self.example_inputs, self.calibration, self.transformer = example_inputs, calibration, transformer
        self.details: dict[str, Any] = {}
        self._modules: list[tuple[str, Any]] = []
        self._origins: dict[str, str] | None = None
        self._rows: list[tuple[str, str]] | None = None

    def know_modules(self, model: nn.Module) -> None:
        """Name layers after ``model``'s modules, matched by weight value (see ``_origins``)."""
        self._modules, self._origins = module_weights(model), None

    def layers(self) -> list[tuple[str, str]]:
        """(name the engine knows the layer by, the torch module it came from, where known)."""
        if self._rows is None:  # the float artifact never changes: read its graph once
            self._rows = self._engine_layers()
        rows = self._rows
        if self._modules:
            if self._origins is None:
                self._origins = name_layers(self._layer_weights(), self._modules)
            rows = [(layer, self._origins.get(layer, origin)) for layer, origin in rows]
        return rows

    def resolve(self, names: Sequence[str]) -> list[str]:
        """The engine's names of the layers ``names`` mean: a layer as the engine names it, or a torch
        module, or a module holding several layers ("encoder.layer.0" means all of its layers).

        Raises UsageError for a name that matches no quantizable layer, rather than quantize
        everything and report the name as kept in float.
        """
        if not names:
            return []
        rows = self.layers()
        picked: list[str] = []
        for name in names:
            hits = [layer for layer, origin in rows
                    if name == layer or (origin and in_module(origin, name))]
            if not hits:
                known = ", ".join(dict.fromkeys(origin or layer for layer, origin in rows[:4]))
                raise UsageError(f"no quantizable layer of the model on {self.cfg.target} is named '{name}' "
                                 f"(layers come from modules such as {known})",
                                 hint="name a torch module (or a module containing layers) as the sensitivity "
                                      "table's 'from' column shows it: slimkit quantize --sensitivity")
            picked += [h for h in hits if h not in picked]
        return picked

    def _engine_layers(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def _layer_weights(self) -> dict[str, Any]:
        raise NotImplementedError

    def build(self, exclude: Sequence[str], name: str, *, pick_precision: bool = False) -> Deployed:
        raise NotImplementedError

    def load_float(self) -> Deployed:
        raise NotImplementedError

    @classmethod
    def export(cls, model: nn.Module, example_inputs: Inputs, workdir: Path) -> Path:
        """Write the float artifact this backend quantizes (when the caller has none deployed yet)."""
        raise NotImplementedError


class OpenVinoBackend(Backend):
    _outlier_scores: dict[str, float] | None = None  # scored on the first build, reused by later ones

    def _engine_layers(self) -> list[tuple[str, str]]:
        from slimkit.techniques.quantize._openvino import openvino_layers

        return openvino_layers(self.float_artifact, weighted_only=self.cfg.scheme.endswith("weight-only"))

    def _layer_weights(self) -> dict[str, Any]:
        from slimkit.techniques.quantize._openvino import openvino_layer_weights

        return openvino_layer_weights(self.float_artifact)

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

    @classmethod
    def export(cls, model: nn.Module, example_inputs: Inputs, workdir: Path) -> Path:
        from slimkit.export.openvino import torch_to_openvino

        path = workdir / "float.xml"
        torch_to_openvino(model, example_inputs, path)
        return path


class OrtBackend(Backend):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from slimkit.techniques.quantize._onnxruntime import preprocess

        self.pre = preprocess(self.float_artifact, self.workdir / "float.pre.onnx")

    def _engine_layers(self) -> list[tuple[str, str]]:
        from slimkit.techniques.quantize._onnxruntime import onnx_layers

        # A transformer's activation matmuls are never quantized (see quantize_onnx): nothing to rank.
        return onnx_layers(self.pre, weighted_only=self.transformer)

    def _layer_weights(self) -> dict[str, Any]:
        from slimkit.techniques.quantize._onnxruntime import onnx_layer_weights

        return onnx_layer_weights(self.pre)

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

    @classmethod
    def export(cls, model: nn.Module, example_inputs: Inputs, workdir: Path) -> Path:
        from slimkit.export.onnx import export_onnx

        path = workdir / "float.onnx"
        export_onnx(model, example_inputs, path)
        return path
