"""Which scheme runs on which target, with which engine, and why a combination is not offered."""

from __future__ import annotations

from dataclasses import dataclass

from slimkit._optional import available
from slimkit.errors import UnavailableError, UsageError
from slimkit.techniques.quantize._config import SCHEMES


@dataclass(frozen=True)
class Support:
    ok: bool
    engine: str  # what does the work when ok, else why not and what would work
    needs: tuple[str, ...] = ()
    calibrations: tuple[str, ...] = ()


_NO_GPU = "needs a CUDA GPU target (tensorrt); fp8 also needs Hopper/Ada tensor cores"
_OV_CAL = ("minmax", "percentile", "mse")
_ORT_CAL = ("minmax", "percentile", "entropy")

_MATRIX: dict[tuple[str, str], Support] = {
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


def support(scheme: str, target: str) -> Support:
    """The support entry of one combination (never raises for known names).

    Example:
        >>> support("int8-static", "openvino").ok
        True
        >>> support("fp8", "openvino").ok
        False
    """
    if scheme == "fp8":
        return Support(False, _NO_GPU)
    if target == "tensorrt":
        return Support(False, "TensorRT quantization needs a CUDA GPU, none here: use openvino or onnxruntime")
    if target == "torch-compile":
        return Support(False, "quantize for target 'torch' (torchao) and compile that; not offered directly")
    return _MATRIX.get((target, scheme), Support(False, f"unknown target '{target}'"))


_PRECISION_CAPS: dict[str, str] = {}


def hardware_gap(scheme: str, target: str) -> str | None:
    """Why this CPU cannot run an offered combination as it claims, or None: OpenVINO compiles bf16
    on a CPU without bf16 units, but then runs f32 and still reports bf16."""
    if (target, scheme) != ("openvino", "bf16"):
        return None
    if "caps" not in _PRECISION_CAPS:
        try:
            import openvino as ov

            _PRECISION_CAPS["caps"] = " ".join(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
        except Exception:  # noqa: BLE001 - no OpenVINO: the dependency check reports it
            return None
    if "BF16" in _PRECISION_CAPS["caps"].split():
        return None
    return "this CPU has no bf16 units (OpenVINO would run f32 and call it bf16): use fp16 or int8 on openvino"


def check(scheme: str, target: str, calibration: str | None = None, qat: bool = False) -> Support:
    """Raise UsageError (what is wrong, what would work) unless the combination runs here."""
    from slimkit.targets import TARGETS

    if target not in TARGETS.names():
        import difflib

        near = difflib.get_close_matches(target.lower(), TARGETS.names(), n=1, cutoff=0.6)
        raise UsageError(f"unknown target '{target}'", hint=(f"did you mean '{near[0]}'? " if near else "")
                         + f"targets: {', '.join(TARGETS.names())}")
    s = support(scheme, target)
    gap = hardware_gap(scheme, target) if s.ok else None
    if gap:
        raise UnavailableError(f"scheme '{scheme}' on '{target}' is not available on this machine: {gap}",
                               hint="run `slimkit list` for what this machine offers")
    if not s.ok:
        works = [t for t in ("openvino", "onnxruntime", "torch") if support(scheme, t).ok]
        alt = f"; {scheme} runs on: {', '.join(works)}" if works else ""
        raise UsageError(f"scheme '{scheme}' is not offered on target '{target}': {s.engine}",
                         hint=f"run `slimkit list` for the scheme x target matrix{alt}")
    for module in s.needs:
        ok, why = available(module)
        if not ok:
            raise UsageError(f"scheme '{scheme}' on '{target}' needs {module}: {why}",
                             hint=f"pip install {module}")
    if calibration is not None and calibration not in s.calibrations:
        raise UsageError(f"calibration '{calibration}' is not available for {scheme} on {target}",
                         hint=f"use one of: {', '.join(s.calibrations) or 'none'}")
    if qat and (scheme, target) not in (("int8-static", "openvino"), ("int8-static", "onnxruntime")):
        raise UsageError(f"quantization-aware training is offered for int8-static on openvino or onnxruntime, "
                         f"not {scheme} on {target}", hint="use --scheme int8-static --target openvino")
    return s


def matrix_rows(targets: tuple[str, ...] = ("torch", "onnxruntime", "openvino", "torch-compile", "tensorrt"),
                ) -> list[tuple[str, str, bool, str]]:
    """(scheme, target, offered, engine or reason) for every combination, for `slimkit list`."""
    rows = []
    for scheme in SCHEMES:
        for target in targets:
            s = support(scheme, target)
            ok = s.ok and all(available(m)[0] for m in s.needs)
            reason = s.engine if ok or not s.ok else f"{s.engine}; missing: " + ", ".join(
                m for m in s.needs if not available(m)[0])
            gap = hardware_gap(scheme, target) if ok else None
            if gap:
                ok, reason = False, f"{s.engine}; not on this machine: {gap}"
            rows.append((scheme, target, ok, reason))
    return rows
