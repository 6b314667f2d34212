"""Saving and loading pruned models without pickle.

A pruned model folder holds ``structure.json`` (every module's size attributes, so an
unpruned instance of the same architecture can be shrunk back to the pruned shapes),
``model.safetensors`` (dense weights) or ``sparse.safetensors`` (weights with many zeros
stored as their non-zero values plus a packed bitmask: what unstructured pruning saves on
disk), and ``config.json`` when the model carries a Hugging Face config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimkit.core.files import atomic_path, atomic_write_json
from slimkit.techniques.prune._errors import PruneError

_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features",
          "normalized_shape", "num_embeddings", "embedding_dim", "num_attention_heads", "all_head_size",
          "embed_dim", "num_heads", "head_dim", "num_channels", "num_groups")
# Below this fraction of zeros a bitmask + values costs more than the dense tensor.
_SPARSE_MIN = 1.0 / 32.0 + 0.05


def structure(model: nn.Module) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, m in model.named_modules():
        attrs: dict[str, object] = {a: (list(v) if isinstance(v, tuple) else v) for a in _ATTRS
                 if isinstance(v := getattr(m, a, None), (int, tuple)) and not isinstance(v, bool)}
        if attrs:
            out[name] = attrs
    return out


def _hf_config(model: nn.Module) -> dict | None:
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            return cfg.to_dict()
    return None


def save_pruned(model: nn.Module, folder: str | Path, *, sparse: bool = False) -> Path:
    """Write the pruned ``model`` into ``folder``; returns the weights file.

    Example:
        >>> import tempfile, torch
        >>> net = torch.nn.Linear(64, 64); _ = net.weight.data[:, :48].zero_()
        >>> path = save_pruned(net, tempfile.mkdtemp(), sparse=True)
        >>> path.name, path.stat().st_size < 64 * 64 * 4
        ('sparse.safetensors', True)
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    for name, t in model.state_dict().items():
        t = t.detach().contiguous()
        zeros = float((t == 0).float().mean()) if t.is_floating_point() and t.numel() else 0.0
        if sparse and zeros >= _SPARSE_MIN and t.numel() >= 64:
            mask = (t != 0).flatten()
            tensors[f"{name}::values"] = t.flatten()[mask].clone()
            tensors[f"{name}::mask"] = torch.from_numpy(np.packbits(mask.numpy()))
            meta[name] = json.dumps(list(t.shape))
        else:
            tensors[name] = t.clone()
    weights = folder / ("sparse.safetensors" if sparse else "model.safetensors")
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"slimkit_sparse": json.dumps(meta)})
    atomic_write_json(folder / "structure.json", {"format": 1, "modules": structure(model)})
    config = _hf_config(model)
    if config is not None:
        atomic_write_json(folder / "config.json", json.loads(json.dumps(config, default=str)))
    return weights


def read_state(weights: Path) -> dict[str, torch.Tensor]:
    """A state dict from a dense or sparse safetensors file (sparse tensors are expanded)."""
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("slimkit_sparse", "{}"))
        raw = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    state = {k: v for k, v in raw.items() if "::" not in k}
    for name, shape_text in meta.items():
        shape = json.loads(shape_text)
        values, packed = raw[f"{name}::values"], raw[f"{name}::mask"]
        numel = int(np.prod(shape))
        mask = torch.from_numpy(np.unpackbits(packed.numpy())[:numel].astype(bool))
        dense = torch.zeros(numel, dtype=values.dtype)
        dense[mask] = values
        state[name] = dense.view(shape)
    return state


def load_pruned(folder: str | Path, model: nn.Module) -> nn.Module:
    """Shrink an unpruned ``model`` of the same architecture to the saved shapes and load the weights.

    Example:
        >>> import tempfile, torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
        >>> small = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
        >>> d = tempfile.mkdtemp(); _ = save_pruned(small, d)
        >>> load_pruned(d, net)[0].out_features
        3
    """
    folder = Path(folder)
    weights = next((p for p in (folder / "sparse.safetensors", folder / "model.safetensors") if p.is_file()), None)
    if weights is None or not (folder / "structure.json").is_file():
        raise PruneError(f"{folder} is not a pruned model folder (no structure.json + weights)",
                         hint="point at the artifact folder slimkit prune wrote")
    saved = json.loads((folder / "structure.json").read_text())["modules"]
    state = read_state(weights)
    modules = dict(model.named_modules())
    for name, attrs in saved.items():
        if name not in modules:
            raise PruneError(f"saved layer '{name}' is not in the given model", layer=name,
                             hint="load into a fresh model of the architecture that was pruned")
        for attr, value in attrs.items():
            setattr(modules[name], attr, tuple(value) if isinstance(value, list) else value)
    for key, tensor in state.items():
        owner, _, leaf = key.rpartition(".")
        mod = modules.get(owner)
        if mod is None:
            continue
        if leaf in mod._parameters and mod._parameters[leaf] is not None:
            mod._parameters[leaf] = nn.Parameter(torch.empty_like(tensor),
                                                 requires_grad=mod._parameters[leaf].requires_grad)
        elif leaf in mod._buffers and mod._buffers[leaf] is not None:
            mod._buffers[leaf] = torch.empty_like(tensor)
    model.load_state_dict(state, strict=True)
    _restore_config(folder, model)
    return model.eval()


def _restore_config(folder: Path, model: nn.Module) -> None:
    """Copy the pruned sizes recorded in config.json onto the model's Hugging Face config."""
    path = folder / "config.json"
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict") and "slimkit_pruning" in saved:
            cfg.slimkit_pruning = saved["slimkit_pruning"]
            cfg.pruned_heads = {int(k): v for k, v in saved.get("pruned_heads", {}).items()}
            cfg.intermediate_size = saved.get("intermediate_size", cfg.intermediate_size)
