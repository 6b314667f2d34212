"""The quantizers: how each target runs each scheme, found by (target, scheme).

A quantizer is the support entry of one combination (offered or not, the engine that does the
work, the packages it needs, its calibrations) and, where a float artifact is quantized, the
backend class that does it. slimkit registers its own here; a package that adds a target adds
its quantizers through the ``slimkit.quantizers`` entry-point group (one :class:`Quantizer` per
entry point), so a plug-in target takes part in ``slimkit quantize`` and the search.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from slimkit.core.data import Inputs
from slimkit.core.registry import Registry
from slimkit.errors import UsageError
from slimkit.techniques.quantize._backends import Backend, OpenVinoBackend, OrtBackend


@dataclass(frozen=True)
class Support:
    ok: bool
    engine: str  # what does the work when ok, else why not and what would work
    needs: tuple[str, ...] = ()
    calibrations: tuple[str, ...] = ()


_NO_GPU = "needs a CUDA GPU target (tensorrt); fp8 also needs Hopper/Ada tensor cores"
_OV_CAL = ("minmax", "percentile", "mse")
_ORT_CAL = ("minmax", "percentile", "entropy")

_BUILTIN: dict[tuple[str, str], Support] = {
    ("openvino", "int8-static"): Support(True, "NNCF nncf.quantize on the float IR", ("nncf", "openvino"), _OV_CAL),
    ("openvino", "int8-weight-only"): Support(True, "NNCF compress_weights INT8_ASYM", ("nncf", "openvino")),
    ("openvino", "int4-weight-only"): Support(True, "NNCF compress_weights INT4_SYM, grouped", ("nncf", "openvino")),
    ("openvino", "fp16"): Support(True, "fp16 IR weights (compute in the fastest precision the CPU measures)",
                                  ("openvino",)),
    ("openvino", "bf16"): Support(True, "OpenVINO bf16 inference precision", ("openvino",)),
    ("openvino", "int8-dynamic"): Support(False, "OpenVINO quantizes activations dynamically only inside "
                                          "weight-compressed models: use int8-weight-only or int8-static"),
    ("onnxruntime", "int8-dynamic"): Support(True, "onnxruntime.quantization.quantize_dynamic",
                                             ("onnxruntime", "onnx")),
    ("onnxruntime", "int8-static"): Support(True, "onnxruntime.quantization quantize_static, QDQ, pre-processed",
                                            ("onnxruntime", "onnx"), _ORT_CAL),
    ("onnxruntime", "int8-weight-only"): Support(False, "ONNX Runtime has no int8 weight-only kernels on CPU: "
                                                 "use int8-dynamic (int8 weights, dynamic activations)"),
    ("onnxruntime", "int4-weight-only"): Support(False, "ONNX Runtime 4-bit (MatMulNBits) is not wired up yet: "
                                                 "use openvino int4-weight-only"),
    ("onnxruntime", "fp16"): Support(False, "ONNX Runtime's CPU provider lacks most fp16 kernels (it would add "
                                     "casts and run slower): use openvino fp16/bf16"),
    ("onnxruntime", "bf16"): Support(False, "ONNX Runtime's CPU provider has no bf16 kernels: use openvino bf16"),
    ("torch", "int8-dynamic"): Support(True, "torchao Int8DynamicActivationInt8WeightConfig", ("torchao",)),
    ("torch", "int8-weight-only"): Support(True, "torchao Int8WeightOnlyConfig", ("torchao",)),
    ("torch", "int4-weight-only"): Support(False, "torchao's int4 kernels need a GPU (or the mslk package): "
                                           "use openvino int4-weight-only"),
    ("torch", "int8-static"): Support(False, "static int8 in torch needs torch.ao (deprecated) or NNCF's torch "
                                      "backend (fails on this torch): use openvino or onnxruntime"),
    ("torch", "fp16"): Support(True, "module and inputs cast to float16", ()),
    ("torch", "bf16"): Support(True, "module and inputs cast to bfloat16", ()),
}



@dataclass(frozen=True)
class Quantizer:
    """One target's way to run one scheme.

    ``backend`` quantizes the float artifact the target deploys (OpenVINO IR, ONNX); None where
    the combination is not offered, or where the model itself is quantized (torch, torchao).

    Example:
        >>> quantizer("onnxruntime", "int8-dynamic").backend.__name__
        'OrtBackend'
    """

    target: str
    scheme: str
    support: Support
    backend: type[Backend] | None = None
    # The QuantizeConfig options it takes beyond scheme and target (e.g. "samples", "per_channel",
    # "exclude"); one set away from its default otherwise is refused. None: slimkit's own runtimes,
    # whose rules QuantizeConfig keeps.
    options: frozenset[str] | None = None

    @property
    def name(self) -> str:
        return f"{self.target}:{self.scheme}"


def _as_quantizer(obj: object) -> Quantizer:
    if not isinstance(obj, Quantizer):
        raise TypeError(f"a {type(obj).__name__}, not a slimkit quantize Quantizer")
    return obj


QUANTIZERS: Registry[Quantizer] = Registry("quantizer", group="slimkit.quantizers", check=_as_quantizer)
_BACKENDS: dict[str, type[Backend]] = {"openvino": OpenVinoBackend, "onnxruntime": OrtBackend}
for (_target, _scheme), _support in _BUILTIN.items():
    QUANTIZERS.register(f"{_target}:{_scheme}", Quantizer(_target, _scheme, _support,
                                                          _BACKENDS.get(_target) if _support.ok else None))


def quantizer(target: str, scheme: str) -> Quantizer | None:
    """The registered quantizer of ``scheme`` on ``target``, or None."""
    key = f"{target}:{scheme}"
    return QUANTIZERS.get(key) if key in QUANTIZERS else None


def backend_class(target: str, scheme: str = "int8-static") -> type[Backend]:
    """The class that quantizes ``target``'s float artifact for ``scheme``."""
    found = quantizer(target, scheme)
    if found is None or found.backend is None:
        raise UsageError(f"no quantizer of {scheme} on target '{target}' works on an exported artifact",
                         hint="run `slimkit list` for the scheme x target matrix")
    return found.backend


def export_float(model: nn.Module, example_inputs: Inputs, target: str, workdir: Path,
                 scheme: str = "int8-static") -> Path:
    """The float artifact a backend quantizes, when the caller has not deployed one already."""
    return backend_class(target, scheme).export(model, example_inputs, workdir)
