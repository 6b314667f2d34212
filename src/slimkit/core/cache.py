"""The user cache folder, where trained baselines are kept between commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from slimkit.core.files import atomic_path, atomic_write_json


def cache_dir() -> Path:
    """``$SLIMKIT_CACHE``, else ``$XDG_CACHE_HOME/slimkit``, else ``~/.cache/slimkit``."""
    if os.environ.get("SLIMKIT_CACHE"):
        return Path(os.environ["SLIMKIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slimkit"


def load_weights(model: nn.Module, key: str) -> dict | None:
    """Load cached weights for ``key`` into ``model``; returns their metadata or None."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file  # safetensors: no pickle, safe to load

    weights = cache_dir() / f"{key}.safetensors"
    meta = cache_dir() / f"{key}.json"
    if not (weights.exists() and meta.exists()):
        return None
    try:
        model.load_state_dict(load_file(str(weights)))
        return json.loads(meta.read_text())
    except (RuntimeError, ValueError, OSError, SafetensorError):
        # A stale or damaged cache entry (truncated, another version's) is retrained rather than trusted.
        return None


def save_weights(model: nn.Module, key: str, meta: dict) -> Path:
    """Store ``model``'s weights under ``key`` (atomically) with ``meta`` beside them."""
    from safetensors.torch import save_file

    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.safetensors"
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    atomic_write_json(folder / f"{key}.json", meta)
    return path
