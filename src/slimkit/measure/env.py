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


def cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model in ("", "unknown", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count(), "flags": [f for f in _FLAGS if f in flags]}


def environment(threads: int | None = None) -> dict[str, Any]:
    """A JSON-ready description of this machine and the software versions.

    Example:
        >>> "torch" in environment()["versions"]
        True
    """
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in _OPTIONAL:
        ok, why = available(mod)
        versions[mod] = why if ok else None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "gpu": gpu,
        "versions": versions,
    }
