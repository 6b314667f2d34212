"""Automatic joint search over techniques, their settings and targets (Optuna).

``SearchSpace`` and ``optimize`` load on first use: the command line reads ``SAMPLERS`` and
``PRUNERS`` (in ``names``) to build its help without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from slimkit.search.names import PRUNERS, SAMPLERS

if TYPE_CHECKING:
    from slimkit.search.space import SearchSpace
    from slimkit.search.study import optimize

_LAZY = {"SearchSpace": "slimkit.search.space", "optimize": "slimkit.search.study"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'slimkit.search' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = ["PRUNERS", "SAMPLERS", "SearchSpace", "optimize"]
