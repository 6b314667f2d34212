"""Checkpoints without pickle: weights as safetensors, optimizer tensors as safetensors,
everything else (step counters, hyperparameters, history) as JSON.

A checkpoint is a folder ``epoch-NNNN`` written under a temporary name and renamed, and
``latest.json`` (also written atomically) names the newest complete one; a crash mid-write
leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit.core.files import atomic_path, atomic_write_json
from slimkit.errors import SlimkitError, first_line

FORMAT = 1


def _split(state: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested state by references into ``tensors``; the rest stays JSON."""
    if torch.is_tensor(state):
        key = prefix or "_"
        tensors[key] = state.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(state, dict):
        # JSON keys are strings: remember int keys (optimizer state is keyed by param index).
        return {"__dict__": [[k, _split(v, f"{prefix}.{k}", tensors)] for k, v in state.items()]}
    if isinstance(state, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(state)]
    if isinstance(state, float) and state != state:  # NaN is not JSON
        return {"__float__": "nan"}
    return state


def _join(state: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(state, dict):
        if "__tensor__" in state:
            return tensors[state["__tensor__"]]
        if "__float__" in state:
            return float(state["__float__"])
        return {k: _join(v, tensors) for k, v in state["__dict__"]}
    if isinstance(state, list):
        return [_join(v, tensors) for v in state]
    return state


def rng_state(gen: torch.Generator) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "augment": gen.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(folder: Path, epoch: int, model: nn.Module | dict[str, torch.Tensor], training_state: dict[str, Any],
         keep: int = 2) -> Path:
    """Write checkpoint ``epoch`` under ``folder`` atomically and point latest.json at it (``model``:
    the module or its state dict)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    name = f"epoch-{epoch:04d}"
    target = folder / name
    if target.exists():
        shutil.rmtree(target)
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        state = model if isinstance(model, dict) else model.state_dict()
        weights = {k: v.detach().cpu().contiguous() for k, v in state.items()}
        save_file(weights, str(tmp / "model.safetensors"))
        tensors: dict[str, torch.Tensor] = {}
        meta = _split(training_state, "s", tensors)
        save_file(tensors, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"format": FORMAT, "epoch": epoch, "state": meta}))
    atomic_write_json(folder / "latest.json", {"format": FORMAT, "epoch": epoch, "path": name})
    old = sorted(p for p in folder.glob("epoch-*") if p.is_dir() and p.name != name)
    for stale in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder``, or None."""
    pointer = Path(folder) / "latest.json"
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text())["path"]
        path = Path(folder) / str(name)
        if path.parent == Path(folder) and (path / "state.json").exists():
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # A damaged or stale pointer: the newest epoch folder that finished writing (save() writes
    # state.json last) is the checkpoint it named or one before it.
    done = sorted(p for p in Path(folder).glob("epoch-*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load(path: Path, model: nn.Module) -> dict[str, Any]:
    """Load weights into ``model`` and return the training state (tensors restored)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        raw = json.loads((path / "state.json").read_text())
        tensors = load_file(str(path / "state.safetensors"))
        weights = load_file(str(path / "model.safetensors"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise SlimkitError(f"checkpoint {path} is damaged: {first_line(exc)}",
                           hint="delete that epoch folder to resume from the one before it, "
                                "or start again without --resume") from None
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise SlimkitError(f"cannot resume from {path}: {first_line(exc)}",
                           hint="the checkpoint belongs to another model; start without --resume") from None
    fmt = raw.get("format") if isinstance(raw, dict) else None
    if fmt != FORMAT:
        raise SlimkitError(f"checkpoint {path} has format {str(fmt)[:40]}, expected {FORMAT}",
                           hint="start again without --resume, or delete that epoch folder")
    try:
        return _join(raw["state"], tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SlimkitError(f"checkpoint {path} is damaged: its state does not match its tensors ({first_line(exc)})",
                           hint="delete that epoch folder to resume from the one before it") from None
