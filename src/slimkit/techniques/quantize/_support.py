"""Which scheme runs on which target, with which engine, and why a combination is not offered."""

from __future__ import annotations

import dataclasses

from slimkit._optional import available
from slimkit.errors import UnavailableError, UsageError
from slimkit.targets import TARGETS
from slimkit.techniques.quantize._config import OPTIONS, SCHEMES, QuantizeConfig
from slimkit.techniques.quantize._registry import _NO_GPU, Support, quantizer


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
    found = quantizer(target, scheme)
    if found is not None:
        return found.support
    if target in TARGETS:  # a target of a plug-in that registered no quantizer for this scheme
        return Support(False, f"target '{target}' registers no {scheme} quantizer "
                              "(a package adds one through the slimkit.quantizers entry points)")
    return Support(False, f"unknown target '{target}'")


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


def check(scheme: str, target: str, calibration: str | None = None, qat: bool = False,
          config: QuantizeConfig | None = None) -> Support:
    """Raise UsageError (what is wrong, what would work) unless the combination runs here (with
    ``config``'s options, where a plug-in quantizer says which it takes)."""
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
        works = [t for t in TARGETS.names() if support(scheme, t).ok]
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
    found = quantizer(target, scheme)
    if config is not None and found is not None and found.options is not None:
        defaults = {f.name: f.default for f in dataclasses.fields(QuantizeConfig)}
        unused = [name for name in OPTIONS if name not in found.options and getattr(config, name) != defaults[name]]
        if unused:
            raise UsageError(f"{', '.join(unused)} not taken by {scheme} on {target}",
                             hint=f"it takes: {', '.join(sorted(found.options)) or 'no options'}")
    return s


def matrix_rows(targets: tuple[str, ...] | None = None) -> list[tuple[str, str, bool, str]]:
    """(scheme, target, offered, engine or reason) for every combination (every registered target by
    default), for `slimkit list`."""
    targets = tuple(TARGETS.names()) if targets is None else targets
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
