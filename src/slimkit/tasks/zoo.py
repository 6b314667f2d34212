"""Models named on the command line, offline: ``torchvision:NAME``, ``timm:NAME``, ``hf:LOCAL_DIR``,
``path/to/file.py:function``; each with the preprocessing its inputs need (image transforms, a
tokenizer), which the run records beside every artifact.

Weights are read without unpickling anything the user did not name: safetensors where it can,
``torch.load(weights_only=True)`` for a ``.pt``/``.pth`` file the user passed with ``--weights``
(PyTorch's restricted loader: tensors and containers only), and Hugging Face folders through
their safetensors files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimkit._optional import require
from slimkit.errors import TaskError, UsageError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINDS = ("torchvision", "timm", "hf")


@dataclass
class UserModel:
    """A model from the zoo and how its inputs are made from raw data.

    ``preprocess`` is plain JSON (it goes into every artifact's manifest); ``tokenizer`` and
    ``transform`` are the live objects that make inputs from text and images; ``labels`` the class
    names where the model knows them.
    """

    model: nn.Module
    name: str
    preprocess: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None
    transform: Any = None
    labels: list[str] | None = None

    def write_assets(self, folder: Path) -> None:
        """The files the preprocessing reads (a tokenizer's), written into ``folder``."""
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))

    @property
    def has_assets(self) -> bool:
        return self.tokenizer is not None


def image_preprocess(size: int, mean: tuple[float, ...] = IMAGENET_MEAN,
                     std: tuple[float, ...] = IMAGENET_STD) -> dict[str, Any]:
    """The JSON form of the image transform: resize the short side, center-crop, scale, normalize."""
    return {"kind": "image", "resize": round(size * 256 / 224), "crop": size, "mean": list(mean), "std": list(std),
            "layout": "NCHW", "scale": "RGB in [0, 1] before normalizing"}


def image_transform(pre: dict[str, Any]) -> Any:
    """The torchvision transform ``pre`` (from :func:`image_preprocess`) describes."""
    tv = require("torchvision", "image preprocessing")
    t = tv.transforms
    return t.Compose([t.Resize(pre["resize"]), t.CenterCrop(pre["crop"]), t.Lambda(_rgb), t.ToTensor(),
                      t.Normalize(pre["mean"], pre["std"])])


def _rgb(img: Any) -> Any:
    return img.convert("RGB") if hasattr(img, "convert") else img


def load_model(spec: str, *, weights: str | Path | None = None, image_size: int = 224,
               max_length: int = 128) -> UserModel:
    """The model ``spec`` names, its weights loaded, with the preprocessing its inputs need.

    Example:
        >>> m = load_model("torchvision:resnet18", image_size=64)
        >>> type(m.model).__name__, m.preprocess["crop"]
        ('ResNet', 64)
    """
    kind, sep, rest = spec.partition(":")
    if kind == "torchvision" and sep:
        return _torchvision(rest, weights, image_size)
    if kind == "timm" and sep:
        return _timm(rest, weights)
    if kind == "hf" and sep:
        if weights is not None:
            raise UsageError("--weights is for torchvision, timm and file models; an hf: folder holds its weights",
                             hint="drop --weights (save the model with save_pretrained into the folder)")
        return _hf(Path(rest), max_length)
    head, _, _ = spec.rpartition(":")
    if head.endswith(".py"):
        return _from_file(spec, weights)
    raise UsageError(f"cannot read model '{spec}'",
                     hint="use torchvision:NAME, timm:NAME, hf:LOCAL_DIR or path/to/file.py:function")


def _state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors' own error types: a truncated or foreign file
            raise UsageError(f"{path} is not a readable safetensors file ({type(exc).__name__})",
                             hint="save it again with safetensors.torch.save_file(model.state_dict(), path)") from None
    try:
        # The user named this file; PyTorch's weights-only loader refuses anything but tensors.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # torch's message suggests weights_only=False, which slimkit never does
        raise UsageError(f"{path} is not a state_dict torch can read without unpickling objects",
                         hint="save the weights alone: torch.save(model.state_dict(), f), or as safetensors") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"{path} holds no state_dict (a dict of tensors)",
                         hint="save it with torch.save(model.state_dict(), path)")
    return state


def _classes_in(state: dict[str, torch.Tensor], model: nn.Module) -> int | None:
    """The class count of a weights file whose last layer differs from ``model``'s (a user's head)."""
    own = model.state_dict()
    for key in reversed(list(state)):
        if key.endswith("weight") and key in own and state[key].shape != own[key].shape and state[key].dim() >= 2:
            return int(state[key].shape[0])
    return None


def _torchvision(name: str, weights: str | Path | None, size: int) -> UserModel:
    tv = require("torchvision", "torchvision models")
    if name not in tv.models.list_models():
        raise UsageError(f"torchvision has no model '{name}'",
                         hint="names as in torchvision.models.list_models(), e.g. resnet18, mobilenet_v3_small")
    model = tv.models.get_model(name, weights=None)
    if weights is not None:
        state = _state_dict(weights)
        classes = _classes_in(state, model)
        if classes is not None:  # the user's own head
            model = tv.models.get_model(name, weights=None, num_classes=classes)
        _load(model, state, weights)
    pre = image_preprocess(size)
    return UserModel(model.eval(), name, pre, transform=image_transform(pre))


def _load(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise UsageError(f"the weights in {path} do not fit the model: {(lines or [str(exc)])[0][:300]}",
                         hint="give the weights this architecture was trained with") from None


def _timm(name: str, weights: str | Path | None) -> UserModel:
    timm = require("timm", "timm models (pip install timm)")
    try:
        model = timm.create_model(name, pretrained=False)
    except Exception as exc:
        raise UsageError(f"timm cannot build '{name}': {first_line(exc, 200)}",
                         hint="names as in timm.list_models()") from None
    if weights is not None:
        state = _state_dict(weights)
        classes = _classes_in(state, model)
        if classes is not None:
            model = timm.create_model(name, pretrained=False, num_classes=classes)
        _load(model, state, weights)
    cfg = timm.data.resolve_data_config({}, model=model)
    size = int(cfg["input_size"][-1])
    pre = image_preprocess(size, tuple(cfg["mean"]), tuple(cfg["std"]))
    return UserModel(model.eval(), name, pre, transform=image_transform(pre))


def _hf(folder: Path, max_length: int) -> UserModel:
    transformers = require("transformers", "Hugging Face models (pip install 'slimkit[nlp]')")
    if not (folder / "config.json").is_file():
        raise UsageError(f"{folder} holds no config.json: not a Hugging Face model folder",
                         hint="give the folder save_pretrained() wrote")
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # a broken config.json, or one that asks for remote code
        raise UsageError(f"{folder}/config.json cannot be read: {type(exc).__name__}: {first_line(exc, 200)}",
                         hint="give a folder that model.save_pretrained() wrote (no custom code)") from None
    archs = getattr(config, "architectures", None)
    arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    cls: Any = getattr(transformers, arch, None) if arch else None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
        cls = transformers.AutoModel  # no architecture named, or one that is not a model class
    if not any(folder.glob("*.safetensors")):
        raise UsageError(f"{folder} holds no .safetensors weights; slimkit does not unpickle .bin files",
                         hint="convert them: model.save_pretrained(folder, safe_serialization=True)")
    from slimkit.tasks._minilm_model import quiet_transformers

    try:
        with quiet_transformers():  # no weight-loading progress bar and load report in the user's terminal
            model = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True)
    except Exception as exc:
        raise TaskError(f"transformers cannot load {folder}: {first_line(exc)}") from None
    model.config.return_dict = True
    tokenizer = None
    pre: dict[str, Any] = {"kind": "tensors"}
    if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt")):
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as exc:
            raise UsageError(f"the tokenizer in {folder} cannot be read: {type(exc).__name__}",
                             hint="save it again with tokenizer.save_pretrained(folder)") from None
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 2:
            max_length = min(max_length, positions)  # longer texts would index past the position table
        pre = {"kind": "text", "tokenizer": "the tokenizer files of this folder", "max_length": max_length,
               "padding": "longest", "truncation": True}
    labels = None
    id2label = getattr(config, "id2label", None)
    if isinstance(id2label, dict) and len(id2label) > 1:
        labels = [str(id2label[i]) for i in sorted(id2label, key=int)]
    return UserModel(model.eval(), folder.name, pre, tokenizer=tokenizer, labels=labels)


def _from_file(spec: str, weights: str | Path | None) -> UserModel:
    from slimkit.tasks._loader import call_user_function

    obj = call_user_function(spec, "model")
    if not isinstance(obj, nn.Module):
        raise TaskError(f"{spec} returned {type(obj).__name__}, not an nn.Module",
                        hint="return the model (a torch.nn.Module) from that function")
    if weights is not None:
        _load(obj, _state_dict(weights), weights)
    return UserModel(obj.eval(), type(obj).__name__, {"kind": "tensors"})
