"""The environment a measurement was taken in: versions, CPU flags, threads, GPU."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from slimkit._optional import available

_OPTIONAL = ("onnx", "onnxruntime", "openvino", "nncf", "torchvision", "transformers", "optuna",
             "torch_pruning", "torchao", "sklearn", "matplotlib")
_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")


def _proc_cpuinfo() -> tuple[str | None, set[str] | None]:
    """The model name and feature flags /proc/cpuinfo gives; None for each it does not (or no file)."""
    name: str | None = None
    flags: set[str] | None = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if name is None and line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                elif flags is None and line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                if name is not None and flags is not None:
                    break
    except OSError:
        pass
    return name, flags


def int8_dot_saturates(flags: set[str] | None = None) -> bool:
    """Whether this CPU's int8 kernels can saturate with full-range int8 weights.

    x86 CPUs without VNNI (AVX2, or AVX-512 before VNNI) multiply uint8 activations by int8
    weights with ``vpmaddubsw``, which adds each pair of products into a saturating int16:
    255 x 127 x 2 overflows it, so full-range weights give wrong sums (OpenVINO, oneDNN and
    ONNX Runtime all document it). Weights on a 7-bit grid (|q| <= 64) cannot overflow:
    255 x 64 x 2 = 32640. VNNI and AMX add into int32 and do not saturate; neither do non-x86
    CPUs. An x86 CPU whose flags cannot be read is assumed to saturate (the safe side: 7-bit
    weights cost little accuracy, saturation can cost much).

    Example:
        >>> int8_dot_saturates({"avx2", "fma"}), int8_dot_saturates({"avx2", "avx512_vnni"})
        (True, False)
    """
    if flags is None:
        if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
            return False
        flags = _proc_cpuinfo()[1]
        if flags is None:
            return True
    return not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}


def cpu_info() -> dict[str, Any]:
    name, flags = _proc_cpuinfo()
    model = platform.processor() or "unknown"
    if name and model in ("", "unknown", platform.machine()):
        model = name
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in _FLAGS if f in (flags or set())],
            "int8_dot_saturates": int8_dot_saturates()}


def environment(threads: int | None = None) -> dict[str, Any]:
    """A JSON-ready description of this machine and the software versions.

    Example:
        >>> "torch" in environment()["versions"]
        True
    """
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in _OPTIONAL:
        ok, why = available(mod)
        versions[mod] = why if ok else None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        # How torch's OpenMP threads wait (unset: spin, then sleep): it moves torch eager's timings,
        # on a busy machine by multiples (BENCHMARKS.md, session 16).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gpu": gpu,
        "versions": versions,
    }
