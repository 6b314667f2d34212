"""Predictions on raw files: texts and images made into the model's inputs by the preprocessing the
artifact's manifest records (its tokenizer files, its image transform), or arrays given as they are."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimkit._optional import require
from slimkit.errors import UsageError
from slimkit.targets.predictor import Predictor
from slimkit.tasks.sources import encode_texts, read_rows

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_CHUNK = 32


def _texts(path: Path, column: str) -> list[str]:
    """Texts of a file: a .txt line each, or a csv/jsonl column."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; this model reads text",
                         hint="give a .txt file (one text per line), or a .csv/.jsonl with a text column")
    if path.suffix in (".csv", ".jsonl"):
        rows = read_rows(path, path.suffix[1:], None)
        missing = next((i for i, r in enumerate(rows, 1) if column not in r), None)
        if missing is not None:
            fields = ", ".join(map(str, rows[missing - 1]))
            raise UsageError(f"row {missing} of {path} has no '{column}' (it has: {fields})",
                             hint="name the text column with --text-column")
        return [str(r[column] or "") for r in rows]
    try:
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="give a text file, one text per line") from None


def _images(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise UsageError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def check_output(output: str | Path, model: str | Path, source: str | Path) -> Path:
    """Where predictions may be written: never into the model's folder (its files would be
    replaced), never over the input or inside an input folder, never onto a folder."""
    path = Path(output)
    if not str(output).strip():
        raise UsageError("--output is empty", hint="name a file, e.g. --output predictions.jsonl")
    resolved = path.resolve()
    for guarded, what in ((Path(model).resolve(), "the model's folder"), (Path(source).resolve(), "the input")):
        if resolved == guarded or guarded in resolved.parents:
            raise UsageError(f"--output {output} is {what} or inside it: writing there would replace your files",
                             hint="write the predictions somewhere else, e.g. --output predictions.jsonl")
    if path.is_dir():
        raise UsageError(f"--output {output} is a folder", hint="name a file inside it")
    blocked = next((p for p in resolved.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise UsageError(f"--output {output} is under {blocked}, which is a file")
    return path


def predict_file(predictor: Predictor, path: str | Path, *, text_column: str = "text") -> Iterator[dict[str, Any]]:
    """One record per item of ``path``: what it was, the output and, for class scores, the class.

    Texts (.txt, .csv, .jsonl) go through the artifact's tokenizer, images (a file or a folder)
    through its image transform; a .npy/.npz file is the model's inputs as arrays.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"input {path} does not exist")
    pre = _preprocessing(predictor)
    kind = pre.get("kind")
    labels = pre.get("labels")
    if path.suffix in (".npy", ".npz"):
        yield from _records(predictor, _arrays(path, predictor), None, labels)
    elif kind == "text":
        texts = _texts(path, text_column)
        tokenizer = require("transformers", "text preprocessing").AutoTokenizer.from_pretrained(
            str(predictor.folder), local_files_only=True)
        for i in range(0, len(texts), _CHUNK):
            chunk = texts[i:i + _CHUNK]
            encoded = encode_texts(tokenizer, chunk, pre.get("max_length", 128))
            inputs = {k: v for k, v in encoded.items() if k in predictor.input_names}
            yield from _records(predictor, inputs, chunk, labels)
    elif kind == "image":
        from PIL import Image

        from slimkit.tasks.zoo import image_transform

        transform = image_transform(pre)
        files = _images(path)
        for i in range(0, len(files), _CHUNK):
            part = files[i:i + _CHUNK]
            x = torch.stack([_image(Image, transform, p) for p in part])
            yield from _records(predictor, {predictor.input_names[0]: x}, [str(p) for p in part], labels)
    else:
        raise UsageError(f"the artifact records no text or image preprocessing; {path.name} cannot be made "
                         "into its inputs", hint="give the inputs as arrays: a .npy file, or an .npz named by input")


def _image(image_module: Any, transform: Any, path: Path) -> torch.Tensor:
    try:
        with image_module.open(path) as img:
            return transform(img)
    except (OSError, ValueError, image_module.DecompressionBombError) as exc:
        raise UsageError(f"{path} is not an image slimkit can read ({type(exc).__name__})",
                         hint="give image files (PNG, JPEG, ...) that open, or remove this one") from None


def _arrays(path: Path, predictor: Predictor) -> dict[str, torch.Tensor]:
    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle an input file
        arrays = {predictor.input_names[0]: loaded} if isinstance(loaded, np.ndarray) else \
            {k: loaded[k] for k in loaded.files}
        for name, array in arrays.items():
            if array.dtype.kind not in "biuf":
                raise UsageError(f"array '{name}' in {path.name} holds {array.dtype} values, not numbers")
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    except (OSError, ValueError, EOFError, TypeError) as exc:
        raise UsageError(f"{path} is not a NumPy file slimkit can read: {type(exc).__name__}",
                         hint="save the inputs with numpy.save (one input) or numpy.savez(name=array, ...)") from None


_KINDS = {"kind": str, "labels": list, "max_length": int, "resize": int, "crop": int, "mean": list, "std": list}


def _preprocessing(predictor: Predictor) -> dict[str, Any]:
    """The manifest's preprocessing, checked (the file may have been edited)."""
    from slimkit.targets.manifest import ArtifactError

    pre = predictor.manifest.get("preprocessing") or {}
    hint = "the manifest was edited or damaged: deploy the model again to rewrite it"
    if not isinstance(pre, dict):
        raise ArtifactError("the manifest's 'preprocessing' is not an object", hint=hint)
    for key, kind in _KINDS.items():
        value = pre.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)
                                  or (isinstance(value, int) and value < 1)):
            raise ArtifactError(f"the manifest's preprocessing '{key}' is not a valid {kind.__name__}", hint=hint)
    if pre.get("kind") == "image" and not (all(isinstance(pre.get(k), int) for k in ("resize", "crop")) and all(
            isinstance(pre.get(k), list) and len(pre[k]) == 3 and all(isinstance(v, (int, float)) for v in pre[k])
            for k in ("mean", "std"))):
        raise ArtifactError("the manifest's image preprocessing lacks resize, crop, mean or std", hint=hint)
    if pre.get("labels") is not None and not all(isinstance(v, str) for v in pre["labels"]):
        raise ArtifactError("the manifest's preprocessing 'labels' are not names", hint=hint)
    return pre


def _records(predictor: Predictor, inputs: dict[str, torch.Tensor], shown: list[str] | None,
             labels: list[str] | None) -> Iterator[dict[str, Any]]:
    out = predictor(**inputs)
    for i in range(out.shape[0]):
        row: dict[str, Any] = {"input": shown[i] if shown else i}
        if out.dim() == 2 and out.shape[1] > 1:
            k = int(out[i].argmax())
            row["class"] = k
            if isinstance(labels, list) and k < len(labels):
                row["label"] = labels[k]
        # JSON has no NaN or infinity: a non-finite output is written as null.
        row["output"] = [round(float(v), 6) if math.isfinite(float(v)) else None for v in out[i].flatten()[:4096]]
        yield row
