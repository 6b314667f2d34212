"""Techniques: each transforms a model and is configured by a small frozen dataclass.

Techniques never import each other; they share the core (data, training engine, measurement).
"""

from __future__ import annotations

from slimkit._optional import available

# name -> (modules it needs, description)
_CATALOGUE: dict[str, tuple[tuple[str, ...], str]] = {
    "prune": (("torch_pruning",), "structured (channels, neurons, BERT heads/FFN with config update) and "
              "unstructured (magnitude, global/layer-wise, gradual, 2:4) pruning with recovery"),
    "fuse": (("onnxruntime",), "exact graph fusions: conv/linear + BatchNorm folding in torch, "
             "ONNX Runtime's saved graph optimizations"),
    "distill": ((), "knowledge distillation: soft targets with temperature, feature matching through "
                "adapters (auto-paired by depth), attention transfer"),
    "quantize": ((), "int8 static/dynamic/weight-only, int4 weight-only, fp16/bf16, QAT, sensitivity, "
                 "accuracy-aware float fallback (NNCF, onnxruntime.quantization, torchao)"),
}


def list_techniques() -> list[tuple[str, bool, str]]:
    """(name, available or why not, description) for every technique.

    Example:
        >>> "fuse" in [name for name, _, _ in list_techniques()]
        True
    """
    rows = []
    for name, (needs, desc) in _CATALOGUE.items():
        missing = [why for ok, why in (available(m) for m in needs) if not ok]
        rows.append((name, True if not missing else missing[0], desc))  # type: ignore[arg-type]
    return rows


def import_all() -> list[str]:
    """Import every technique package so its recipe-step runner is registered.

    Returns the names that could not be imported (their optional backend is missing).
    """
    import importlib

    missing = []
    for name in _CATALOGUE:
        try:
            importlib.import_module(f"slimkit.techniques.{name}")
        except ImportError:
            missing.append(name)
    import slimkit.techniques._steps  # noqa: F401  (registers the recipe-step runners)

    return missing
